// Package lambdas holds Streamer's AWS Lambda functions: connect,
// disconnect and router behind API Gateway's WebSocket API ($connect,
// $disconnect and $default), processor behind the table's DynamoDB
// stream, and reaper on a one-minute schedule, which hands stalled requests
// back to the processor (see docs/reaper.md). lambdaapp.Functions lists
// them. Each is a small main package around package lambdaapp, which
// reads the STREAMER_* environment variables (see lambdaapp.ConfigFromEnv)
// and builds the handlers.
//
// Each main is one line, lambdaapp.Main(lambdaapp.Router, plugins.All),
// over this repository's plugin list (package plugins); a project made
// with `streamer new` has the same mains over its own list. lambdaapp.Env
// lends the plugins the deployment's S3 bucket (STREAMER_BUCKET) as their
// blob store, as the report plugin uses it.
//
// Build the deployment zips with `make package` (`streamer package`):
// dist/<function>.zip, each holding one executable named bootstrap for the
// provided.al2023 runtime on arm64, built with the lambda.norpc tag. Deploy
// them with `make deploy` (osls); serverless.yml names each zip as its
// function's package artifact, with handler bootstrap.
//
// The tests run the handlers on DynamoDB Local, replying through the local
// gateway's Management API, and run every bootstrap, built for this
// machine, under the Lambda Runtime Interface Emulator.
package lambdas
