#!/usr/bin/env bash
# npm-ci.sh DIR — `npm ci` in DIR from its committed lockfile, unless
# DIR/node_modules already matches it (a stamp records the hash of
# package.json + package-lock.json + .npmrc + the node/npm versions).
set -euo pipefail
dir="${1:?usage: npm-ci.sh DIR}"
stamp="$dir/node_modules/.streamer-install-stamp"
want="$(cd "$dir" && { cat package.json package-lock.json .npmrc 2>/dev/null; node --version; npm --version; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
	echo "npm: $dir/node_modules up to date (skipping npm ci)"
	exit 0
fi
start=$SECONDS
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" >"$stamp"
echo "npm: npm ci in $dir done in $((SECONDS - start))s"
