// Package lambdas holds Streamer's AWS Lambda functions: connect,
// disconnect and router behind API Gateway's WebSocket API ($connect,
// $disconnect and $default), processor behind the table's DynamoDB
// stream, and reaper on a one-minute schedule, which hands stalled requests
// back to the processor (see docs/reaper.md). lambdaapp.Functions lists
// them. Each is a small main package around package lambdaapp, which
// reads the STREAMER_* environment variables (see lambdaapp.ConfigFromEnv)
// and builds the handlers.
//
// The plugins the router and processor serve are listed once, in
// plugins.All: adding a plugin is one line there, and both functions then
// serve its actions. plugins.All builds them from the function's
// configuration, so a plugin can use the AWS configuration and the
// deployment's S3 bucket (STREAMER_BUCKET), as the report plugin does.
//
// Build the deployment zips with `make package` (scripts/package.sh):
// dist/<function>.zip, each holding one executable named bootstrap for the
// provided.al2023 runtime on arm64, built with the lambda.norpc tag. Deploy
// them with `serverless deploy`; serverless.yml names each zip as its
// function's package artifact, with handler bootstrap.
//
// The tests run the handlers on DynamoDB Local, replying through the local
// gateway's Management API, and run every bootstrap, built for this
// machine, under the Lambda Runtime Interface Emulator.
package lambdas
