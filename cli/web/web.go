// Package web holds the static assets of the dev server's demo page, served
// at "/": index.html (inline CSS, no external resources) and app.js, its
// script. app.js is generated: the demo in clients/js/demo bundled with the
// TypeScript client SDK (@streamer-go/client) by esbuild, and committed, so
// `streamer dev` never needs npm. Rebuild it with
// `cd clients/js && npm run build:demo`; clients/js's tests fail when it is
// stale.
//
// The page connects to ws(s)://<host>/ws?token=<token>, taking the token from
// its own URL's token query parameter or from a text box. It starts delay
// and generate_report jobs, shows each job's live progress, cancels jobs,
// links to finished reports, and after a dropped connection reconnects with
// backoff and resumes every unfinished job after the last seq it saw,
// dropping duplicate events and resuming again on a gap (all done by the
// SDK).
//
// Serve it with:
//
//	mux.Handle("GET /", http.FileServerFS(web.FS))
package web

import "embed"

// FS holds index.html, the demo page, and app.js, its script.
//
//go:embed index.html app.js
var FS embed.FS
