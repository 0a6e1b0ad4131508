// Package report is a plugin with one asynchronous action, generate_report,
// that shows a realistic long-running job: it goes through stages with
// progress, writes a CSV file to object storage and completes with a
// signed, expiring URL that downloads it.
//
// Payload:
//
//	{"startDate": "2024-01-01", "endDate": "2024-01-31"}
//
// Both dates are required, in the layout YYYY-MM-DD; endDate must not be
// before startDate and at most [MaxSpanDays] days after it. Anything else is
// refused with VALIDATION_ERROR, with a detail naming the field.
//
// The handler reports "querying data" (10%), "aggregating" (40%),
// "rendering" (70%) and "uploading" (90%), pausing [Config.StageDelay] at
// each stage so the progress can be watched. It renders the report in
// memory, stores it in [Config.Store] (a blob.Store: a directory served by
// the dev server, or an S3 bucket on AWS) under
// [Config.Prefix]<request id>-<random>.csv, and completes with
//
//	{"url": "<signed URL>", "expiresAt": "<RFC 3339>", "size": <bytes>, "rows": <data rows>}
//
// The URL downloads the report (text/csv) until expiresAt, [Config.TTL]
// after the run, and is refused (403) after that or when changed in any
// way; the stored file expires at the same time, so nothing is kept
// forever. Anyone holding the URL can download the report until then: hand
// it only to the request's owner, as the protocol does with results.
//
// The CSV has the header "date,time,value" and [Config.RowsPerDay] rows per
// day of the range, with values computed deterministically from the date and
// time.
package report
