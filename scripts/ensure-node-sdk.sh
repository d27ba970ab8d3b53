#!/usr/bin/env bash
# Prints the directory of the Node SDK the API role's end-to-end tests point at the gate
# (node-webot's wechat-api, pinned with its dependencies in tests/sdk/node/package-lock.json),
# installing it from npm with `npm ci` when it is missing or older than the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/sdk/node"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  echo "the API role's end-to-end tests need Node.js 20+ with npm (for npm's wechat-api)" >&2
  exit 1
}
stamp=node_modules/.package-lock.json
if [ ! -f node_modules/wechat-api/package.json ] || [ package-lock.json -nt "$stamp" ]; then
  echo "installing wechat-api (npm ci in tests/sdk/node) ..." >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
echo "$PWD"
