#!/usr/bin/env bash
# Makes sure skopeo and umoci are on PATH (`make oci`, `make oci-check`), installing them
# from Debian's packages with apt-get when they are missing. Fails with a message saying
# what to install when that is not possible (not root, no apt-get, no package).
set -euo pipefail
missing=()
for tool in skopeo umoci; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get (Debian packages) ..." >&2
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "make oci needs ${missing[*]}: install them (Debian/Ubuntu: apt-get install -y ${missing[*]}; Fedora: dnf install ${missing[*]})" >&2
    exit 1
  fi
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "make oci: apt-get could not install ${missing[*]}; install them by hand" >&2
    exit 1
  fi
  for tool in "${missing[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "make oci: $tool still not on PATH after apt-get" >&2; exit 1; }
  done
fi
