// Package client is the Go client of the Streamer wire protocol
// (docs/protocol.md): it connects over WebSocket, sends requests, follows
// their progress and result events, and survives dropped connections.
//
// [Dial] opens the first connection, which must succeed. [Client.Request]
// sends an action and blocks until its result: the data of a synchronous
// response, or, for an asynchronous request, the result of its complete
// event. Progress is passed to the callback given with [WithProgress], on the
// caller's goroutine and in order. Results sent in chunks are reassembled
// byte for byte.
//
// The client correlates replies by request id (it always sends one; see
// [WithID]), drops events whose seq it has seen, and asks the server to
// resume a request's stream when it sees a gap. When the connection drops,
// it reconnects with exponential backoff and full jitter, then resumes every
// acknowledged request after the last seq it saw, re-sends requests that
// were not yet acknowledged (an asynchronous re-send with the same id
// attaches to the existing request instead of running it again), and
// re-sends pending status, cancel and ping calls. Callers see none of this,
// except through [Options.OnConnect] and [Options.OnDisconnect].
//
// Failures reported by the server are returned as [*Error], carrying the
// protocol's error code. A Client is safe for concurrent use; [Client.Close]
// fails pending calls with [ErrClosed] and stops every goroutine the client
// started.
package client
