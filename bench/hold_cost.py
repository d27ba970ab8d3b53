#!/usr/bin/env python3
"""What holding a push for its body costs: the gate with dedupe_seconds 0 (decides on
the headers, as `make bench` runs it) against the default 15 (holds every push until
its body is in), and noop-wasm, interleaved round by round. The POST body carries no
MsgId or FromUserName, so nothing is deduplicated and every push is forwarded: the
figure is the hold itself (pause, body read, resume), before any shared-table lookup.

Usage: python3 bench/hold_cost.py [--requests 40000] [--rounds 7]
(after `make bench` has built bench/tools and bench/noop-wasm once).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402


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
    envoys = {}
    try:
        envoys["noop-wasm"] = R.Envoy(envoy_bin, "hold-noop", R.envoy_config("noop-wasm", {"upstream": up}))
        envoys["gate, dedupe_seconds 0"] = R.Envoy(envoy_bin, "hold-d0", R.envoy_config("wechat-gate", {"upstream": up}))
        R.DEDUPE_OFF = {}  # the default: every push is held
        envoys["gate, default (15)"] = R.Envoy(envoy_bin, "hold-d15", R.envoy_config("wechat-gate", {"upstream": up}))
        for name, e in envoys.items():
            if not e.wait_ready():
                raise SystemExit(f"{name} did not start:\n{e.log_text()[-2000:]}")
        req = dict(R.generate()["post"])
        body = Path(req["body_file"]).read_text()
        body = re.sub(r"<(MsgId|FromUserName)>.*?</\1>", "", body)
        anonymous = R.OUT / "bodies" / "anonymous.xml"
        anonymous.write_text(body)
        req["body_file"] = str(anonymous)
        for e in envoys.values():
            R.h2load(e.port, req, 5000, 16)  # warm up
        hz = os.sysconf("SC_CLK_TCK")
        names = list(envoys)
        cpu = {n: [] for n in names}
        for r in range(args.rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                e = envoys[n]
                t0 = R.cpu_ticks(e.pid)
                res = R.h2load(e.port, req, args.requests, 16)
                t1 = R.cpu_ticks(e.pid)
                if res.get("2xx") != args.requests:
                    raise SystemExit(f"{n}: unexpected answers {res}")
                cpu[n].append((t1 - t0) * 1e6 / hz / args.requests)
    finally:
        for e in envoys.values():
            e.stop()
        R.PROCS.stop_all()
    print(f"Envoy CPU per forwarded POST, median of {args.rounds} rounds x {args.requests} requests:")
    for n in names:
        print(f"  {n:24s} {statistics.median(cpu[n]):6.1f} us   rounds {[round(x, 1) for x in cpu[n]]}")


if __name__ == "__main__":
    main()
