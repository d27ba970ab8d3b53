#!/usr/bin/env bash
# Shrinks a built .wasm in place with Binaryen's wasm-opt: the npm build of Binaryen
# (`binaryen`, pinned with its hash in scripts/wasm-opt/package-lock.json), installed by
# `npm ci` on first use. A module already shrunk (its hash is in FILE.shrunk) is left as
# it is, so running it again after a `cargo build` that changed nothing costs nothing.
# Without npm the module is left as cargo built it, with a warning.
set -euo pipefail
wasm=$1
tool=$(cd "$(dirname "$0")/wasm-opt" && pwd)
stamp="$wasm.shrunk"
hash() { sha256sum "$1" | cut -d' ' -f1; }
if [[ -f $stamp && "$(cat "$stamp")" == "$(hash "$wasm")" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "shrink-wasm: npm not found: $wasm is left as cargo built it ($(stat -c %s "$wasm") bytes); install Node.js 20+ to shrink it with wasm-opt" >&2
  exit 0
fi
if [[ ! -x $tool/node_modules/.bin/wasm-opt ]]; then
  (cd "$tool" && npm ci --no-audit --no-fund --loglevel=error)
fi
# Re-encoded only (wasm-ld pads every call's function index to 5 bytes; wasm-opt writes
# it compactly), no optimisation pass: the code V8 compiles is the code cargo built.
# -Oz would take the module from 491 to 422 KiB at no CPU cost, but Envoy's resident
# memory rose by 8.5 MiB at --concurrency 4 with it (and with -Os or -O2), against none
# with this (issue 14, measured with bench/run.py's memory method).
# The features rustc's wasm32-wasip1 target uses; wasm-opt adds none of its own.
"$tool/node_modules/.bin/wasm-opt" --strip-debug --strip-producers \
  --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int \
  "$wasm" -o "$wasm.tmp"
mv "$wasm.tmp" "$wasm"
hash "$wasm" >"$stamp"
