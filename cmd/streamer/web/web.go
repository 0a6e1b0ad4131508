// Package web holds the static assets of the dev server's demo page, served
// at "/": a single self-contained index.html (inline CSS and JavaScript, no
// external resources, no build step) that implements a minimal protocol
// client in the browser.
//
// The page connects to ws(s)://<host>/ws?token=<token>, taking the token from
// its own URL's token query parameter or from a text box. It starts delay
// and generate_report jobs, shows each job's live progress, cancels jobs,
// links to finished reports, and after a dropped connection reconnects with
// backoff and resumes every unfinished job after the last seq it saw,
// dropping duplicate events and resuming again on a gap.
//
// Serve it with:
//
//	mux.Handle("GET /", http.FileServerFS(web.FS))
package web

import "embed"

// FS holds index.html, the demo page.
//
//go:embed index.html
var FS embed.FS
