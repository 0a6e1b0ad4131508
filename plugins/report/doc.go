// Package report is a plugin with one asynchronous action, generate_report,
// that shows a realistic long-running job: it goes through stages with
// progress, writes a CSV file and completes with the file's URL.
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
// each stage so the progress can be watched. It writes the report to
// [Config.Dir] atomically (a temporary file renamed into place) and
// completes with
//
//	{"url": "<BaseURL><name>.csv", "size": <bytes>, "rows": <data rows>}
//
// The CSV has the header "date,time,value" and [Config.RowsPerDay] rows per
// day of the range, with values computed deterministically from the date and
// time. [FileServer] serves the written files over HTTP.
package report
