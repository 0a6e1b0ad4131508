// Package streamertest runs a plugin's actions in memory, without a server,
// so a plugin author can test them as a client would see them.
//
// [Run], [RunPlugin] and [RunHandler] build a [streamer.App] on the memory
// store (storage/memory) and a recording sender (transport/transporttest),
// send the request frame from a connection, as a WebSocket connection
// would, and, when the router admits the request as async, run the
// processor ([streamer.App.Process]) until the request ends. Nothing of the
// framework is imitated: routing, validation, scopes, middleware,
// admission, timeouts, retries, cancel and the wire messages are the App's
// own. The returned [Outcome] holds what the connection received: the
// progress events, the result or the error body, and the terminal seq.
//
//	out, err := streamertest.RunPlugin(ctx, myplugin.New(), "count", CountIn{To: 3},
//		streamertest.WithMode(streamer.ModeAsync))
//	// out.Progress: 3 updates; out.Result: {"counted":3}; out.Seq: 5 (after started)
//
// Options, named WithX, set the mode ([WithMode]), the handler's timeout
// ([WithTimeout], [WithDeadline]), a cancel sent by the client after a number
// of progress events ([WithCancelAfter]) or at any time ([Start] and
// [Running.Cancel]), the principal, the metadata, and the App's Config
// ([WithConfig]: App-wide middleware, a fake clock).
//
// Every run builds an App of its own, so runs are independent and may run
// in parallel tests. Run and its variants return once the request has ended
// and no goroutine of the run is left.
//
// Retry delays are not slept through: between two runs of a request, the
// App's clock jumps to the time the request is due, so a retried request
// finishes at once and [Outcome.Attempts] counts its runs.
package streamertest
