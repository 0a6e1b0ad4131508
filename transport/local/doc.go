// Package local is an embedded WebSocket gateway that behaves like AWS API
// Gateway's WebSocket API, for running Streamer on one machine
// (`streamer dev`) and in tests.
//
// A [Gateway] is an [net/http.Handler]: mount it wherever clients should
// connect, such as /ws. It invokes a [Handler] the way API Gateway invokes
// its $connect, $default and $disconnect routes:
//
//   - [Handler.Connect] runs before the WebSocket upgrade. An error wrapping
//     streamer.ErrUnauthorized refuses the handshake with HTTP 401, a
//     [*RefusedError] with its 4xx status (429, say), any other error with
//     HTTP 500; in every case there is no upgrade.
//   - [Handler.Message] runs once per inbound data message, concurrently (as
//     Lambda would), at most [Config.MaxInFlight] at a time per connection.
//     Beyond that the gateway stops reading from the connection
//     (backpressure) until a call returns. A call runs on the goroutine that
//     read its message; one still running after a millisecond hands the
//     reading to another goroutine, so a long call does not hold up the
//     messages behind it, and a quick one costs no goroutine switch.
//   - [Handler.Disconnect] runs exactly once per connection that connected,
//     after it closed for any reason.
//
// API Gateway's limits are enforced: an inbound message larger than
// [Config.MaxMessageSize] (128 KiB) closes the connection with status 1009,
// a connection without inbound messages for [Config.IdleTimeout] (10 min) or
// older than [Config.MaxLifetime] (2 h) is closed with status 1001.
//
// Memory and connections are bounded too, by default: a connection whose
// outbound queue holds more than [Config.MaxOutboundBytes] (1 MiB), or whose
// inbound messages in flight exceed [Config.MaxInboundBytes] (1 MiB), is
// closed with status 1008; a send that would take the gateway over
// [Config.MaxServerOutboundBytes] (256 MiB) closes its connection with
// 1013. Upgrade requests over [Config.NewConnectionsPerIP] (100/s, burst
// 200), [Config.NewConnectionsPerPrincipal] (20/s, burst 100) or
// [Config.MaxConnectionsPerPrincipal] (100 open) get HTTP 429.
//
// The gateway implements [transport.Sender] and [transport.Disconnecter]
// directly, and [Gateway.Management] serves API Gateway's Management API
// (POST, GET and DELETE /@connections/{id}) so that code written for
// aws-sdk-go-v2's apigatewaymanagementapi client can post to it unchanged.
// It authenticates nobody: serve it on a listener of its own
// ([ListenManagement]), as devserver and awslocal do.
package local
