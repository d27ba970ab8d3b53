#!/usr/bin/env bash
# Makes sure the fuzz targets can be built: the nightly toolchain (rustup) and
# cargo-fuzz 0.13 (crates.io), each installed only when missing. Fails loudly when
# either cannot be had: fuzzing is never skipped.
set -euo pipefail
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "installing the nightly Rust toolchain (rustup, minimal profile) ..." >&2
  rustup toolchain install nightly --profile minimal >&2 \
    || { echo "ensure-fuzz: cannot install the nightly toolchain" >&2; exit 1; }
fi
if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.'; then
  echo "installing cargo-fuzz 0.13 (crates.io) ..." >&2
  cargo install --locked cargo-fuzz --version '^0.13' >&2 \
    || { echo "ensure-fuzz: cannot install cargo-fuzz" >&2; exit 1; }
fi
rustup run nightly rustc --version >&2
cargo fuzz --version >&2
