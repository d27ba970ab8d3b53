#!/usr/bin/env python3
"""Builds of the gate compared side by side: each given .wasm in its own Envoy (the same
setup: `wechat-gate`, `wechat-gate-hold`, `wechat-gate-stream` or `wechat-gate-safe…`),
with noop-wasm beside them, interleaved round by round as `make bench` does (fresh
Envoys every round, the order rotated, every run checked to have taken its path). This
is how each change to the forwarded path was measured: build before, build after, both
in one run. It replaces bench/hostcall_cost.py, whose ablation variants were patched
into a src/host/http.rs that no longer exists; an ablation is now just another build.

  python3 bench/builds.py --wasm before=/tmp/a.wasm --wasm after=target/…/wechat_gate.wasm \
      [--setup wechat-gate] [--workload post] [--requests 20000] [--rounds 7]

Prints per build the median Envoy CPU per request, the median of the per-round
differences to the first build and to noop-wasm, and every round's figure.
(Run `make bench` once first: it builds bench/tools and bench/noop-wasm.)
"""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--setup", default="wechat-gate")
    ap.add_argument("--workload", default="post", choices=list(R.WORKLOADS))
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rewarm", type=int, default=3000)
    args = ap.parse_args()
    builds = dict(w.split("=", 1) for w in args.wasm)
    envoy_bin = os.environ.get("ENVOY_BIN") or subprocess.run(
        [str(R.ROOT / "scripts/ensure-envoy.sh"), "--pinned"], check=True, capture_output=True, text=True
    ).stdout.strip()
    R.OUT.mkdir(parents=True, exist_ok=True)
    _, up = R.start_server("upstream", [str(R.WG_BENCH), "upstream", "--listen", "127.0.0.1:0"])
    ports = {"upstream": up}
    names = ["noop-wasm"] + list(builds)
    cpu = {n: [] for n in names}
    loads = []
    envoys = {}
    try:
        for r in range(args.rounds):
            for e in envoys.values():
                e.stop()
            envoys = {"noop-wasm": R.Envoy(envoy_bin, "noop-wasm", R.envoy_config("noop-wasm", ports))}
            for n, path in builds.items():
                R.GATE_WASM = Path(path).resolve()
                envoys[n] = R.Envoy(envoy_bin, f"build-{n}", R.envoy_config(args.setup, ports))
            for n, e in envoys.items():
                if not e.wait_ready():
                    raise SystemExit(f"{n} did not start:\n{e.log_text()[-2000:]}")
            reqs = R.generate()
            gates = {args.setup: envoys[n] for n in builds}
            for n in builds:
                problems = R.prepare({args.setup: envoys[n]}, reqs)
                if problems:
                    raise SystemExit(f"{n}: {problems}")
            del gates
            req = reqs[args.workload]
            for e in envoys.values():
                R.load(e.port, req, args.rewarm, 16)
            R.settle(envoys.values())
            loads.append(os.getloadavg()[0])
            for n in names[r % len(names):] + names[: r % len(names)]:
                e = envoys[n]
                setup = "noop-wasm" if n == "noop-wasm" else args.setup
                before = R.path_snapshot(e, up)
                t0 = R.cpu_ns(e.pid)
                res = R.load(e.port, req, args.requests, 16)
                t1 = R.cpu_ns(e.pid)
                strayed = R.path_problems_settled(setup, args.workload, args.requests, before, e, up)
                if not R.as_expected(res, R.expected_class(setup, args.workload), args.requests) or strayed:
                    raise SystemExit(f"{n}: unexpected answers {res} {strayed}")
                cpu[n].append((t1 - t0) / 1e3 / args.requests)
    finally:
        for e in envoys.values():
            e.stop()
        R.PROCS.stop_all()
    first = list(builds)[0]
    print(f"Envoy CPU per request, {args.setup} / {R.WORKLOADS[args.workload]}, {args.rounds} rounds x "
          f"{args.requests} requests, load average {min(loads):.2f}-{max(loads):.2f}:")
    for n in names:
        d_noop = statistics.median(a - b for a, b in zip(cpu[n], cpu["noop-wasm"]))
        d_first = statistics.median(a - b for a, b in zip(cpu[n], cpu[first]))
        print(f"  {n:14s} {statistics.median(cpu[n]):6.1f} us  - noop {d_noop:+5.1f}  - {first} {d_first:+5.1f}"
              f"   rounds {[round(x, 1) for x in cpu[n]]}")
    for n in builds:
        size = Path(builds[n]).stat().st_size
        print(f"  {n}: {size} bytes ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
