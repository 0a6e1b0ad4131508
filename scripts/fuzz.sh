#!/usr/bin/env bash
# fuzz.sh — run each fuzz target for a few seconds (a smoke run: the seed
# corpora under testdata/fuzz run with every `go test` anyway). Used by
# scripts/test.sh; run it alone with `bash scripts/fuzz.sh`.
#
# Environment: FUZZ_TIME per target (default 3s); GO picks the go binary.
# To add a target, add a "package-dir:FuzzName" line to TARGETS below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GO="${GO:-go}"
FUZZ_TIME="${FUZZ_TIME:-3s}"

TARGETS=(
	".:FuzzDecodeFrame"
	".:FuzzFrameKeys"
	"./lambdas/lambdaapp:FuzzQueuedKey"
	"./middleware:FuzzAuthenticate"
	"./middleware:FuzzParseJWKS"
	"./storage/dynamodb:FuzzNewlyQueued"
)

rc=0
for t in "${TARGETS[@]}"; do
	pkg="${t%%:*}"
	name="${t##*:}"
	echo "fuzz $name ($pkg) for $FUZZ_TIME"
	# The DynamoDB Local endpoint is unset: no fuzz target needs it, and
	# storage/dynamodb's TestMain would create a table for nothing.
	env -u AWS_ENDPOINT_URL_DYNAMODB "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZ_TIME" "$pkg" || rc=$?
done
exit "$rc"
