#!/usr/bin/env bash
# Sets up what the taskstore command needs on the default JSON store, and nothing more: pnpm
# 12.4.2, the dependencies and a build. No system packages (the test servers are setup.sh's).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "12.4.2" ]; then
  echo "setup-cli: installing pnpm 12.4.2"
  npm install --global pnpm@12.4.2 >/dev/null
fi
# better-sqlite3 (a workspace dependency) compiles from source: use the local Node headers.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
pnpm install --frozen-lockfile
pnpm run build
