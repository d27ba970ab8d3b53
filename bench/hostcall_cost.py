#!/usr/bin/env python3
"""Where the gate's time goes, by ablation: builds variants of the filter in a scratch
copy of the crate, each returning from on_http_request_headers right after one kind of
hostcall (made 4 times) or after 10 verdicts, and measures Envoy CPU per verified POST
for each, interleaved round by round (see run.py for the method). Envoy's release
binary has no symbols and V8 writes no perf map, so `perf` cannot attribute the time;
this can.

  E   return at once (the module's own floor)
  P4  4 x the source.address property      H4  4 x the whole request-header map
  G4  4 x one request header (:path)       T4  4 x the clock
  M4  4 x a counter increment              S4  4 x setting a request header
  D   the header map + 10 x verify::decide
Per call: (variant - E) / 4, or for D ((D - E) - H4's one call) / 10.

Usage: python3 bench/hostcall_cost.py [--requests 40000] [--rounds 5]
(after `make bench` has built bench/tools and bench/noop-wasm once).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402

VARIANTS = {
    "E": "return Action::Continue;",
    "P4": 'for _ in 0..4 { let _ = calls::property(&["source", "address"]); } return Action::Continue;',
    "H4": "for _ in 0..4 { let _ = calls::request_headers(); } return Action::Continue;",
    "G4": 'for _ in 0..4 { let _ = calls::request_header(":path"); } return Action::Continue;',
    "T4": "for _ in 0..4 { let _ = calls::now_unix(); } return Action::Continue;",
    "M4": "for _ in 0..4 { self.count(Metrics::passed_through); } return Action::Continue;",
    "S4": 'for _ in 0..4 { let _ = calls::set_request_header("x-ablation", Some("1")); } return Action::Continue;',
    "D": (
        "let Some(h) = calls::request_headers() else { return Action::Continue; };"
        ' let src = b"127.0.0.1:5".to_vec();'
        ' let head = RequestHead { method: h.get(":method").unwrap_or_default(), path: h.get(":path"), source: Some(&src) };'
        " let sources = Sources { allow: &self.admission.allow, live_list_ready: true };"
        " for _ in 0..10 { let _ = verify::decide(&head, &config, sources, self.now()); }"
        " return Action::Continue;"
    ),
}
MARKER = "        // One hostcall for the whole header map"


def build_variants(scratch):
    """Builds one .wasm per variant; returns {name: path}."""
    src = scratch / "crate"
    shutil.copytree(R.ROOT / "src", src / "src")
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"]:
        shutil.copy(R.ROOT / f, src / f)
    toml = (src / "Cargo.toml").read_text()
    toml = toml.split("# Micro-benchmarks")[0] + "\n[profile.release]" + toml.split("[profile.release]")[1]
    (src / "Cargo.toml").write_text(toml)
    http = src / "src/host/http.rs"
    text = http.read_text()
    if MARKER not in text:
        raise SystemExit(f"{MARKER.strip()!r} is no longer in src/host/http.rs: update this script")
    arms = "".join(f'            "{k}" => {{ {v} }}\n' for k, v in VARIANTS.items())
    block = f'        match option_env!("ABLATE").unwrap_or("") {{\n{arms}            _ => {{}}\n        }}\n'
    http.write_text(text.replace(MARKER, block + MARKER, 1))
    out = {}
    patched = http.read_text()
    for name in VARIANTS:
        http.write_text(patched)  # a fresh mtime: rebuild whatever cargo thinks of ABLATE
        env = dict(os.environ, ABLATE=name)
        subprocess.run(
            ["cargo", "build", "-q", "--release", "--target", "wasm32-wasip1", "--lib"],
            cwd=src, env=env, check=True,
        )
        wasm = scratch / f"gate-{name}.wasm"
        shutil.copy(src / "target/wasm32-wasip1/release/wechat_gate.wasm", wasm)
        out[name] = wasm
    sizes = {wasm.stat().st_size for wasm in out.values()}
    if len(sizes) < len(out) // 2:
        raise SystemExit(f"the variants did not build differently (sizes {sizes})")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    envoy_bin = os.environ.get("ENVOY_BIN") or subprocess.run(
        [str(R.ROOT / "scripts/ensure-envoy.sh"), "--pinned"], check=True, capture_output=True, text=True
    ).stdout.strip()
    R.OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wechat-gate-ablation-") as tmp:
        wasms = build_variants(Path(tmp))
        _, up = R.start_server("upstream", [str(R.WG_BENCH), "upstream", "--listen", "127.0.0.1:0"])
        envoys = {}
        try:
            for name, wasm in wasms.items():
                R.GATE_WASM = wasm
                e = R.Envoy(envoy_bin, f"ablation-{name}", R.envoy_config("wechat-gate", {"upstream": up}))
                if not e.wait_ready():
                    raise SystemExit(f"variant {name} did not start:\n{e.log_text()[-2000:]}")
                envoys[name] = e
            req = R.generate()["post"]
            for e in envoys.values():
                R.load(e.port, req, 5000, 16)  # warm up
            hz = os.sysconf("SC_CLK_TCK")
            names = list(envoys)
            cpu = {n: [] for n in names}
            for r in range(args.rounds):
                for n in names[r % len(names):] + names[: r % len(names)]:
                    e = envoys[n]
                    t0 = R.cpu_ticks(e.pid)
                    res = R.load(e.port, req, args.requests, 16)
                    t1 = R.cpu_ticks(e.pid)
                    if res.get("2xx") != args.requests:
                        raise SystemExit(f"variant {n}: unexpected answers {res}")
                    cpu[n].append((t1 - t0) * 1e6 / hz / args.requests)
        finally:
            for e in envoys.values():
                e.stop()
            R.PROCS.stop_all()
    med = {n: statistics.median(v) for n, v in cpu.items()}
    print(f"Envoy CPU per verified POST, median of {args.rounds} rounds x {args.requests} requests:")
    for n in names:
        print(f"  {n:3s} {med[n]:7.1f} us   rounds {[round(x, 1) for x in cpu[n]]}")
    e = med["E"]
    print("per call, over E:")
    for n, what in [("P4", "source.address property"), ("H4", "request-header map"), ("G4", "one request header"),
                    ("T4", "clock"), ("M4", "counter increment"), ("S4", "set a request header")]:
        print(f"  {what:24s} {(med[n] - e) / 4:5.2f} us")
    print(f"  {'verify::decide in Wasm':24s} {((med['D'] - e) - (med['H4'] - e) / 4) / 10:5.2f} us")


if __name__ == "__main__":
    main()
