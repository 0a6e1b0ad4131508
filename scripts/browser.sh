#!/usr/bin/env bash
# browser.sh — make sure Debian's Chromium is installed at /usr/bin/chromium
# (used by the browser tests through playwright-core). Installs it with apt
# only when missing; needs root (or sudo) the first time.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$CHROMIUM" ]]; then
	echo "browser: $CHROMIUM present ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
	exit 0
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
	command -v sudo >/dev/null 2>&1 || { echo "browser: error: $CHROMIUM missing and not root (no sudo) to apt-get install chromium" >&2; exit 1; }
	SUDO="sudo"
fi

echo "browser: $CHROMIUM missing; installing Debian's chromium with apt-get ..."
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -qq update
$SUDO apt-get -qq install -y chromium >/dev/null
[[ -x "$CHROMIUM" ]] || { echo "browser: error: apt-get installed chromium but $CHROMIUM is still missing" >&2; exit 1; }
echo "browser: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium) in $((SECONDS - start))s"
