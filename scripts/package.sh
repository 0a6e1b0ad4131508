#!/usr/bin/env bash
# package.sh — build the Lambdas (every main package lambdas/<function>:
# connect, disconnect, router, processor, reaper; lambdaapp.Functions lists
# the same, which lambdas/package_test.go checks) for the provided.al2023
# runtime on arm64, and zip each into <OUT_DIR>/<function>.zip holding
# exactly one file: the executable bootstrap (mode 0755), as
# serverless.yml's package.artifact expects. It is `streamer package`, the
# command a project made with `streamer new` runs too.
#
# Usage: scripts/package.sh [OUT_DIR]   (default: <repo>/dist)
# Environment: GO picks the go binary (default: go on PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/dist}"
GO="${GO:-go}"
export GO
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
exec "$GO" run ./cmd/streamer package --dir "$ROOT" --out "$OUT"
