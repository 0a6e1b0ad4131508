#!/usr/bin/env bash
# tools.sh — install tools/node_modules (DynamoDB Local, osls, playwright-core,
# esbuild, TypeScript) from the committed lockfile, skipping `npm ci` when it
# is already up to date.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v node >/dev/null 2>&1 || { echo "tools: error: node not found on PATH" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "tools: error: npm not found on PATH" >&2; exit 1; }
exec "$ROOT/scripts/npm-ci.sh" "$ROOT/tools"
