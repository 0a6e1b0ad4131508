// Package lambdas holds Streamer's AWS Lambda functions: connect,
// disconnect and router behind API Gateway's WebSocket API, and processor
// behind the table's DynamoDB stream. Each is a small main package around
// lambdaapp; the plugins they serve are listed once, in package plugins.
//
// Build the deployment zips with `make package` (dist/<function>.zip, each
// holding one bootstrap for provided.al2023 on arm64) and deploy with
// `serverless deploy`.
package lambdas
