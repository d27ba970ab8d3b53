#!/usr/bin/env python3
"""Where a push's time goes (`make bench-attribution`): builds of the gate that each
remove one step of a push (`attribution-no-*`) or do it twice (`attribution-twice-*`,
the second result thrown away), cargo features of crates/filter that exist only for
this table, interleaved round by round with the full gate and noop-wasm, every run
path-checked as `make bench` does; plus the API role against a plain Envoy route to the
same mock-api.

  python3 bench/attribution.py [--rounds 10] [--requests 12000] [--passes 6] [--groups push,safe,api]
      [--no-build] [--no-write]

Groups, each its own interleaved run on fresh Envoys every round:
- push: the defaults (`dedupe_seconds` 15, the replay table, hold mode), every push a
  fresh signed query and a MsgId of its own (`wg-bench load --unique`), so each push is
  read, recorded in both tables and forwarded.
- safe: safe mode, 0.5 KiB, decrypted (`make bench`'s `wechat-gate-safe`: hold mode,
  `dedupe_seconds` 0, as there the one encrypted message repeats).
- api: the API role (`GET <path>/cgi-bin/user/info`, answered by mock-api through the
  gate's HTTP call with the real token) against a plain route (`GET
  /cgi-bin/user/info?access_token=…` proxied to the same mock-api): Envoy CPU per call
  and latency at a fixed rate.

A row's figure is the median of the per-pass differences (every pass of every round):
the full gate minus the build without the step (`no`), or the build with it twice minus
the full gate (`twice`); the spread is their interquartile range. Writes the
section "Where a push's time goes" of bench/results.md (replacing it) unless --no-write.
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import instructions as I  # noqa: E402
import run as R  # noqa: E402

WASM_DIR = R.OUT / "attribution"
SECTION = "## Where a push's time goes"
INSTR_SECTION = "## Where a push's instructions go"

# (feature, what it stands for, "no": removed / "twice": done twice)
PUSH_ROWS = [
    ("attribution-twice-header-map", "reading the request's header map (one `proxy_get_header_map_pairs`, decoded)", "twice"),
    ("attribution-no-source-address", "the source address (`source.address` property)", "no"),
    ("attribution-no-replay-table", "the replay table's read-modify-write (shared-data get + set of a shard)", "no"),
    ("attribution-no-retry-table", "the retry table's read-modify-write (shared-data get + set of a shard)", "no"),
    ("attribution-twice-body", "reading the body (`proxy_get_buffer_bytes`)", "twice"),
    ("attribution-twice-header-writes", "the request header writes (each set/remove)", "twice"),
    ("attribution-no-response-side", "the response-side and `on_log` calls (the module's work in them)", "no"),
    ("attribution-twice-query", "parsing the query", "twice"),
    ("attribution-twice-xml", "parsing the XML body", "twice"),
]
SAFE_ROWS = [
    ("attribution-twice-base64", "base64 of `Encrypt`", "twice"),
    ("attribution-twice-sha1", "SHA-1 of `Encrypt` (`msg_signature`)", "twice"),
    ("attribution-twice-aes", "AES-CBC decryption", "twice"),
    ("attribution-twice-body-replace", "re-encoding the body (the plaintext handed to Envoy: `proxy_set_buffer_bytes`)", "twice"),
]
GROUPS = {
    "push": ("wechat-gate-defaults", "unique", PUSH_ROWS),
    "safe": ("wechat-gate-safe", "aes512", SAFE_ROWS),
}


def build_all(features):
    """Each build's .wasm (the full gate and one per feature), shrunk as `make build`
    does; the default build last, so that target/ holds it again."""
    WASM_DIR.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in list(features) + [""]:
        args = ["cargo", "build", "--release", "--target", "wasm32-wasip1", "-p", "wechat-gate", "--quiet"]
        if f:
            args += ["--features", f]
        R.log(f"building {f or 'the full gate'} ...")
        subprocess.run(args, cwd=R.ROOT, check=True)
        dst = WASM_DIR / f"{f or 'full'}.wasm"
        shutil.copyfile(R.GATE_WASM, dst)
        subprocess.run([str(R.ROOT / "scripts/shrink-wasm.sh"), str(dst)], check=True)
        out[f or "full"] = dst
    subprocess.run([str(R.ROOT / "scripts/shrink-wasm.sh"), str(R.GATE_WASM)], check=True)
    return out


def run_group(envoy_bin, up, group, wasm, args):
    """One interleaved run: noop-wasm, the full gate and one build per row, fresh Envoys
    every round; {build: [µs per push, per pass]} (the passes of every round in order)."""
    setup, workload, rows = GROUPS[group]
    names = ["noop-wasm", "full"] + [f for f, _, _ in rows]
    cpu = {n: [] for n in names}
    envoys = {}
    try:
        for r in range(args.rounds):
            for e in envoys.values():
                e.stop()
            envoys = {"noop-wasm": R.Envoy(envoy_bin, "noop-wasm", R.envoy_config("noop-wasm", {"upstream": up}))}
            for n in names[1:]:
                R.GATE_WASM = wasm[n]
                envoys[n] = R.Envoy(envoy_bin, f"attr-{n}", R.envoy_config(setup, {"upstream": up}))
            for n, e in envoys.items():
                if not e.wait_ready():
                    raise SystemExit(f"{n} did not start:\n{e.log_text()[-2000:]}")
            reqs = R.generate()
            req = reqs[workload]
            for n in names[1:]:
                problems = R.prepare({setup: envoys[n]}, reqs)
                if problems:
                    raise SystemExit(f"{n}: {problems}")
            for e in envoys.values():
                R.load(e.port, req, args.rewarm, 16)
            R.settle(envoys.values())
            # `--passes` short runs per build, the builds in turn, so that every build's
            # figure spans the whole round and drift on the machine hits them alike.
            n_pass = args.requests // args.passes
            for p in range(args.passes):
                k = (r * args.passes + p) % len(names)
                for n in names[k:] + names[:k]:
                    e = envoys[n]
                    s = "noop-wasm" if n == "noop-wasm" else setup
                    before = R.path_snapshot(e, up)
                    t0 = R.cpu_ns(e.pid)
                    res = R.load(e.port, req, n_pass, 16)
                    t1 = R.cpu_ns(e.pid)
                    strayed = R.path_problems_settled(s, workload, n_pass, before, e, up)
                    if not R.as_expected(res, "2xx", n_pass) or strayed:
                        raise SystemExit(f"{group} / {n}: unexpected answers {res} {strayed}")
                    cpu[n].append((t1 - t0) / 1e3 / n_pass)
            R.log(f"{group} round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {statistics.median(cpu[n][-args.passes:]):.1f}" for n in names))
    finally:
        for e in envoys.values():
            e.stop()
    return cpu


def count_group(group, wasm, args):
    """Instructions per push (bench/instructions.py: Envoy under callgrind) of noop-wasm,
    the full gate twice (the A/A row: what the count moves between two runs of one
    build), `--before` if given, and one build per row; {build: instructions per push}."""
    setup, workload, rows = GROUPS[group]
    builds = {"full": wasm["full"], "full-again": wasm["full"]}
    if args.before:
        builds["before"] = Path(args.before)
    builds.update({f: wasm[f] for f, _, _ in rows})
    out_dir, envoy_bin = I.counter()
    reqs = R.generate()

    def one(item):
        name, path = item
        n = I.count(envoy_bin, out_dir, name, setup, workload, args.instr_requests, args.instr_warmup, reqs, path)
        R.log(f"{group} / {name}: {n:,.0f} instructions per push")
        return name, n

    # A count does not depend on what else runs: builds go side by side, one valgrind each.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.instr_jobs) as pool:
        counts = dict(pool.map(one, [("noop-wasm", None)] + list(builds.items())))
    return counts


def render_instructions(results, args, started, minutes):
    out = [INSTR_SECTION, ""]
    out.append(f"- date: {started} (the run took {minutes:.1f} min); wechat-gate {git_describe()}")
    out.append(f"- command: `make bench-attribution ATTRIBUTION_ARGS=--instructions` (`python3 bench/attribution.py "
               f"--instructions --instr-requests {args.instr_requests} --instr-warmup {args.instr_warmup}"
               f"{' --before ' + args.before if args.before else ''}{' --no-build' if args.no_build else ''}`)")
    out.append("- method: the same builds as the table above, each in its own Envoy (`--concurrency 1`) run under "
               "valgrind's callgrind: the body mode settled, warmed up, then the instructions every thread of the "
               "process executes (Envoy, V8's compiled Wasm, the hostcalls between them) counted over the pushes "
               "(`bench/instructions.py`), every run path-checked. A count, not a time (a cache miss weighs as much as "
               "any instruction), but it barely moves between runs (the A/A row), so steps of a few hundred "
               "instructions show; `no` rows are full − build, `twice` rows build − full.")
    for group, (setup, workload, rows) in GROUPS.items():
        counts = results.get(group)
        if not counts:
            continue
        full, noop = counts["full"], counts["noop-wasm"]
        out += ["", f"**{group}** (`{setup}`, workload `{workload}`), instructions per push:", "",
                "| step | build | how | instructions per push |", "|---|---|---|---|",
                f"| noop-wasm | | | {noop:,.0f} |",
                f"| the full gate | default | | {full:,.0f} |",
                f"| the full gate − noop-wasm | default | | {full - noop:+,.0f} |",
                f"| the full gate run again − the full gate (A/A: the count's own noise) | default | | "
                f"{counts['full-again'] - full:+,.0f} |"]
        if "before" in counts:
            out.append(f"| the build before the cuts − noop-wasm (`{args.before}`) | before | | "
                       f"{counts['before'] - noop:+,.0f} |")
        for f, what, how in rows:
            d = full - counts[f] if how == "no" else counts[f] - full
            out.append(f"| {what} | `{f}` | {how} | {d:+,.0f} |")
    return "\n".join(out) + "\n"


def git_describe():
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=R.ROOT, capture_output=True,
                          text=True).stdout.strip()


def stderr(xs):
    """The standard error of a median, from the interquartile range (a normal's σ is
    IQR / 1.349; the median's error is 1.2533 σ / √n): robust to the bursts."""
    lo, _, hi = R.quartiles(xs)
    return 1.2533 * (hi - lo) / 1.349 / len(xs) ** 0.5


def render(results, args, load_before, load_after, started, minutes):
    out = [SECTION, ""]
    out.append(f"- date: {started} (the run took {minutes:.1f} min); wechat-gate {git_describe()}; "
               f"machine load (1/5/15-min load average) {load_before} before, {load_after} after")
    out.append(f"- command: `make bench-attribution` (`python3 bench/attribution.py --rounds {args.rounds} "
               f"--requests {args.requests} --passes {args.passes}{' --no-build' if args.no_build else ''}`)")
    out.append("- method: each build (`crates/filter`'s `attribution-*` cargo features, off by default: they exist "
               "only for this table) in its own Envoy (`--concurrency 1`, core 0; load and upstream on core 1), "
               "beside noop-wasm and the full gate, interleaved round by round (fresh Envoys every round, "
               "warmed up; within a round the builds take turns in short passes, the order rotated), every run path-checked (`forwarded` +n and no other counter, the "
               "upstream got n verified). `no`: the step removed, the row is full − build; `twice`: the step "
               "done a second time (its result thrown away), the row is build − full, each difference taken "
               "within one pass. Each figure is the median over every pass of every round (µs of Envoy CPU per "
               "push), with the interquartile range in brackets and the standard error of the median estimated "
               "from it (1.2533 × IQR / 1.349 / √n); API role: per round. Raw figures: "
               "`bench/out/attribution/raw.json`.")
    for group, (setup, workload, rows) in GROUPS.items():
        if group not in results:
            continue
        cpu = results[group]
        full, noop = cpu["full"], cpu["noop-wasm"]
        n_run = args.requests // args.passes * args.passes
        title = ("The defaults (`dedupe_seconds` 15, replay table on, hold mode), every push a fresh signed query "
                 "and a MsgId of its own" if group == "push" else
                 "Safe mode, 0.5 KiB, decrypted (`make bench`'s `wechat-gate-safe`: hold mode, `dedupe_seconds` 0)")
        out += ["", f"**{title}** ({args.rounds} rounds × {args.passes} passes × {n_run // args.passes} pushes per build):", "",
                "| step | build | how | µs per push (interquartile range) | ≈ s.e. of the median |",
                "|---|---|---|---|---|"]
        d_noop = [a - b for a, b in zip(full, noop)]
        out.append(f"| the full gate, Envoy CPU per push | default | | {R.spread(full, '')} | {stderr(full):.1f} |")
        out.append(f"| the full gate − noop-wasm | default | | {R.spread(d_noop)} | {stderr(d_noop):.1f} |")
        for f, what, how in rows:
            d = [a - b for a, b in zip(full, cpu[f])] if how == "no" else [b - a for a, b in zip(full, cpu[f])]
            out.append(f"| {what} | `{f}` | {how} | {R.spread(d)} | {stderr(d):.1f} |")
    if "api" in results:
        out += [""] + R.render_api(*results["api"], args.rounds, args.api_requests, args.api_rate)
    return "\n".join(out) + "\n"


def write_section(text, section=SECTION):
    old = R.RESULTS.read_text()
    at = old.find("\n" + section)
    if at >= 0:
        nxt = old.find("\n## ", at + 1)
        old = old[:at] + ("\n" + old[nxt:].lstrip("\n") if nxt >= 0 else "\n")
    R.RESULTS.write_text(old.rstrip("\n") + "\n\n" + text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--requests", type=int, default=12000)
    ap.add_argument("--passes", type=int, default=6, help="short runs per build and round, the builds in turn")
    ap.add_argument("--rewarm", type=int, default=2000)
    ap.add_argument("--api-requests", type=int, default=4000)
    ap.add_argument("--api-rate", type=int, default=500)
    ap.add_argument("--groups", default="push,safe,api")
    ap.add_argument("--no-build", action="store_true", help="use the .wasm files of the last run (bench/out/attribution)")
    ap.add_argument("--no-write", action="store_true", help="print the section, leave bench/results.md as it is")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per push under callgrind instead of timing (push and safe groups)")
    ap.add_argument("--instr-requests", type=int, default=1000, help="pushes counted per build (--instructions)")
    ap.add_argument("--instr-warmup", type=int, default=1000, help="pushes before counting (--instructions)")
    ap.add_argument("--before", metavar="WASM", help="with --instructions: an earlier build counted beside them")
    ap.add_argument("--instr-jobs", type=int, default=2, help="builds counted at once (--instructions)")
    args = ap.parse_args()
    groups = args.groups.split(",")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t_start = time.monotonic()
    features = [f for g in groups if g in GROUPS for f, _, _ in GROUPS[g][2]]
    if args.no_build:
        wasm = {p.stem: p for p in WASM_DIR.glob("*.wasm")}
    else:
        wasm = build_all(features)
    envoy_bin = os.environ.get("ENVOY_BIN") or subprocess.run(
        [str(R.ROOT / "scripts/ensure-envoy.sh"), "--pinned"], check=True, capture_output=True, text=True
    ).stdout.strip()
    R.OUT.mkdir(parents=True, exist_ok=True)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = {}
    try:
        _, up = R.start_server("upstream", [str(R.WG_BENCH), "upstream", "--listen", "127.0.0.1:0"])
        for g in groups:
            if args.instructions:
                if g in GROUPS:
                    results[g] = count_group(g, wasm, args)
                else:
                    R.log(f"{g}: timed only, not counted with --instructions")
            elif g in GROUPS:
                results[g] = run_group(envoy_bin, up, g, wasm, args)
            elif g == "api":
                R.GATE_WASM = wasm["full"]
                results[g] = R.run_api(envoy_bin, args.rounds, args.api_requests, args.api_rate, args.rewarm)
            else:
                raise SystemExit(f"unknown group {g}")
    finally:
        R.PROCS.stop_all()
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    minutes = (time.monotonic() - t_start) / 60
    if args.instructions:
        (WASM_DIR / "raw-instructions.json").write_text(json.dumps(results, indent=1))
        text = render_instructions(results, args, started, minutes)
        print(text)
        if not args.no_write:
            write_section(text, INSTR_SECTION)
        return
    (WASM_DIR / "raw.json").write_text(json.dumps(results, indent=1))
    text = render(results, args, load_before, load_after, started, minutes)
    print(text)
    if not args.no_write:
        write_section(text)
        R.log(f"written to {R.RESULTS.relative_to(R.ROOT)}, section \"{SECTION[3:]}\"")


if __name__ == "__main__":
    main()
