// Package deploy holds the tests of Streamer's deployment template,
// serverless.yml at the repository root. They run `osls package` offline
// (no AWS credentials, no network) and check the CloudFormation template it
// generates against the Go code: the table against
// storage/dynamodb.Schema, the processor's stream filter against
// storage/dynamodb.StreamFilterPattern and QueuedRequest, the functions'
// runtime and STREAMER_* variables, and least-privilege IAM.
//
// The tests skip when tools/node_modules is not installed (`make tools`),
// and fail instead when CI=true.
package deploy
