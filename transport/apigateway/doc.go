// Package apigateway is the [transport.Sender] of the AWS runtime: it posts
// messages to WebSocket connections through API Gateway's Management API
// (PostToConnection, DeleteConnection) with aws-sdk-go-v2.
//
// Each connection's endpoint, https://{domain}/{stage}, is stored with it
// (see [EndpointFromRequest]); Send posts to that endpoint, or to
// Config.Endpoint when the stored one is empty. The Sender keeps one SDK
// client per endpoint.
//
// Errors: a connection that no longer exists (GoneException) wraps
// [transport.ErrGone]; a message over API Gateway's size limit
// (PayloadTooLargeException) wraps [ErrTooLarge]. Throttling
// (LimitExceededException, HTTP 429) and transient errors (5xx, network
// errors) are retried by the SDK's standard retryer, with exponential
// backoff and full jitter, up to Config.MaxRetries times. The SDK's error
// stays reachable with errors.As.
//
// Against the embedded gateway of transport/local, whose Management handler
// mimics API Gateway's, Config.Endpoint is the handler's base URL, such as
// http://127.0.0.1:8080.
package apigateway
