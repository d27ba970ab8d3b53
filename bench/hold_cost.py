#!/usr/bin/env python3
"""What reading a push's body costs, held or streamed: noop-wasm, the gate with
dedupe_seconds 0 (decides on the headers), the gate with the default 15 in hold mode
(allow_on_headers_stop_iteration set) and in stream mode (not set), interleaved round
by round. The POST body carries no MsgId or FromUserName, so nothing is deduplicated
and every push is forwarded: the figure is the body read itself (hold: pause, body,
resume; stream: headers on, body buffered, released), before any retry-table lookup.
Every request has a signed query of its own (the gate answers a reused one itself),
and every run is checked: `forwarded` rose by n, nothing else did, the upstream got n.
Every round starts on fresh Envoys (each settles its body mode again, and is warmed up).
The same cells are in `make bench`; this runs only them, longer.

Usage: python3 bench/hold_cost.py [--requests 40000] [--rounds 7]
(after `make bench` has built bench/tools and bench/noop-wasm once).
"""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402

SETUPS = {
    "noop-wasm": "noop-wasm",
    "gate, dedupe_seconds 0": "wechat-gate",
    "gate, 15, hold": "wechat-gate-hold",
    "gate, 15, stream": "wechat-gate-stream",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    envoy_bin = os.environ.get("ENVOY_BIN") or subprocess.run(
        [str(R.ROOT / "scripts/ensure-envoy.sh"), "--pinned"], check=True, capture_output=True, text=True
    ).stdout.strip()
    R.OUT.mkdir(parents=True, exist_ok=True)
    _, up = R.start_server("upstream", [str(R.WG_BENCH), "upstream", "--listen", "127.0.0.1:0"])
    names = list(SETUPS)
    cpu = {n: [] for n in names}
    envoys = {}
    try:
        for r in range(args.rounds):
            # Fresh Envoys every round: each run records its n queries in the gate's table
            # of used queries (262,144 entries, kept about 306 s), which 7 rounds of 40,000
            # on one Envoy would overflow.
            for e in envoys.values():
                e.stop()
            started, failed = R.start_envoys(envoy_bin, list(SETUPS.values()), {"upstream": up})
            envoys = {n: started[s] for n, s in SETUPS.items() if s in started}
            if failed:
                raise SystemExit(f"did not start: {', '.join(failed)}:\n{list(failed.values())[0][-2000:]}")
            reqs = R.generate()
            req = reqs["anon"]
            problems = R.prepare(started, reqs)
            if problems:
                raise SystemExit(f"body modes: {problems}")
            for e in envoys.values():
                R.load(e.port, req, 5000, 16)  # warm up
            for n in names[r % len(names):] + names[: r % len(names)]:
                e = envoys[n]
                before = R.path_snapshot(e, up)
                t0 = R.cpu_ns(e.pid)
                res = R.load(e.port, req, args.requests, 16)
                t1 = R.cpu_ns(e.pid)
                strayed = R.path_problems(SETUPS[n], "anon", args.requests, before, R.path_snapshot(e, up))
                if res.get("2xx") != args.requests or strayed:
                    raise SystemExit(f"{n}: unexpected answers {res} {strayed}")
                cpu[n].append((t1 - t0) / 1e3 / args.requests)
    finally:
        for e in envoys.values():
            e.stop()
        R.PROCS.stop_all()
    print(f"Envoy CPU per forwarded POST, median of {args.rounds} rounds x {args.requests} requests:")
    for n in names:
        print(f"  {n:24s} {statistics.median(cpu[n]):6.1f} us   rounds {[round(x, 1) for x in cpu[n]]}")
    diffs = [s - h for s, h in zip(cpu["gate, 15, stream"], cpu["gate, 15, hold"])]
    print(f"  stream - hold: {statistics.median(diffs):+.1f} us (median of per-round differences {[round(x, 1) for x in diffs]})")


if __name__ == "__main__":
    main()
