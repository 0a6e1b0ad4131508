#!/usr/bin/env bash
# package.sh — build the four Lambdas for provided.al2023 on arm64 and zip
# each into dist/<function>.zip holding one executable named bootstrap.
#
# Usage: scripts/package.sh [OUT_DIR]   (default: dist)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/dist}"
mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$ROOT"
for fn in connect disconnect router processor; do
	mkdir -p "$work/$fn"
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags="-s -w" \
		-o "$work/$fn/bootstrap" "./lambdas/$fn"
	python3 - "$work/$fn/bootstrap" "$OUT/$fn.zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)  # a regular file, rwxr-xr-x
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read())
PY
	echo "package: $OUT/$fn.zip"
done
