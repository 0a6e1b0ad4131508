#!/usr/bin/env bash
# package.sh — build the Lambdas (every main package lambdas/<function>:
# connect, disconnect, router, processor, reaper; lambdaapp.Functions lists
# the same, which lambdas/package_test.go checks) for the provided.al2023
# runtime on arm64, and zip each into
# <OUT_DIR>/<function>.zip holding exactly one file: the executable
# bootstrap (mode 0755), as serverless.yml's package.artifact expects.
#
# Usage: scripts/package.sh [OUT_DIR]   (default: <repo>/dist)
# Environment: GO picks the go binary (default: go on PATH).
# Needs python3 (its zipfile module writes the zips; no zip binary needed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/dist}"
GO="${GO:-go}"
FUNCTIONS=()
for main in "$ROOT"/lambdas/*/main.go; do
	grep -q '^package main$' "$main" || continue # lambdaapp's Main, not a command
	dir="${main%/main.go}"
	FUNCTIONS+=("${dir##*/}")
done

command -v python3 >/dev/null 2>&1 || { echo "package: python3 is required to write the zips" >&2; exit 1; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/streamer-package.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cd "$ROOT"
for fn in "${FUNCTIONS[@]}"; do
	mkdir -p "$work/$fn"
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 "$GO" build -tags lambda.norpc -trimpath -ldflags="-s -w" \
		-o "$work/$fn/bootstrap" "./lambdas/$fn"
	rm -f "$OUT/$fn.zip"
	python3 - "$work/$fn/bootstrap" "$OUT/$fn.zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
# A fixed timestamp keeps the zip the same for the same binary.
info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
info.create_system = 3                   # Unix, so the mode below is honored
info.external_attr = 0o100755 << 16      # a regular file, rwxr-xr-x
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read())
PY
	echo "package: $OUT/$fn.zip"
done
