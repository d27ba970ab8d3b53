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
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402

WASM_DIR = R.OUT / "attribution"
SECTION = "## Where a push's time goes"

# (feature, what it stands for, "no": removed / "twice": done twice)
PUSH_ROWS = [
    ("attribution-twice-header-map", "reading the request's header map (one `proxy_get_header_map_pairs`, decoded)", "twice"),
    ("attribution-no-source-address", "the source address (`source.address` property)", "no"),
    ("attribution-no-clock", "the clock (`proxy_get_current_time_nanoseconds`: read 1 call in 64)", "no"),
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


def api_config(mock_port):
    """The API role as envoy/envoy.yaml's wechat_api_role listener has it (hold mode),
    calling mock-api as its only upstream."""
    cfg = R.envoy_config("passthrough", {"upstream": mock_port})
    gate = {
        "role": "api", "path": "/wechat-api/mp", "name": "mp", "platform": "official_account",
        "appid": R.APPID,
        "wechat_api": {"secret": R.SECRET, "token_api": "stable",
                       "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}], "timeout_ms": 5000},
        "callers": ["127.0.0.1"],
    }
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"].insert(0, R.wasm_filter("wechat_gate_api", R.GATE_WASM, gate, {"allow_on_headers_stop_iteration": True}))
    cfg["static_resources"]["clusters"].append(R.cluster("wechat_api", mock_port))
    return cfg


def api_token(mock_port):
    body = json.dumps({"grant_type": "client_credential", "appid": R.APPID, "secret": R.SECRET}).encode()
    st, _, resp = R.http_request(mock_port, "POST", "/cgi-bin/stable_token", body, {"content-type": "application/json"})
    if st != 200 or b"access_token" not in resp:
        raise SystemExit(f"mock-api gave no token: {st} {resp[:200]!r}")
    return json.loads(resp)["access_token"]


def latency(port, req, n, rps, lf):
    res = R.load(port, req, n, 4, rps=rps, log_file=lf)
    if not R.as_expected(res, "2xx", n):
        raise SystemExit(f"api latency run: {res}")
    durations = sorted(int(line.split("\t")[2]) for line in lf.read_text().splitlines() if line.strip())
    return R.percentile(durations, 0.50), R.percentile(durations, 0.99)


def run_api(envoy_bin, args):
    """The API role against a plain route, both to one mock-api; CPU per call and latency."""
    env = dict(os.environ, WECHAT_APPSECRET=R.SECRET)
    _, mock = R.start_server("mock-api", [str(R.CLI), "mock-api", "--listen", "127.0.0.1:0", "--appid", R.APPID], env=env)
    token = api_token(mock)
    query = "openid=o_bench_user_000000000001&lang=zh_CN"
    reqs = {
        "api-role": {"method": "GET", "path": f"/wechat-api/mp/cgi-bin/user/info?{query}", "token": R.TOKEN},
        "plain": {"method": "GET", "path": f"/cgi-bin/user/info?access_token={urllib.parse.quote(token)}&{query}", "token": R.TOKEN},
    }
    names = list(reqs)
    cpu = {n: [] for n in names}
    lat = {n: [] for n in names}
    envoys = {}
    lf = R.OUT / "attribution-latency.log"
    R.GATE_WASM = WASM_DIR / "full.wasm"
    try:
        for r in range(args.rounds):
            for e in envoys.values():
                e.stop()
            envoys = {"api-role": R.Envoy(envoy_bin, "attr-api-role", api_config(mock)),
                      "plain": R.Envoy(envoy_bin, "attr-api-plain", R.envoy_config("passthrough", {"upstream": mock}))}
            for n, e in envoys.items():
                if not e.wait_ready():
                    raise SystemExit(f"{n} did not start:\n{e.log_text()[-2000:]}")
            deadline = time.monotonic() + 30
            while R.one_request(envoys["api-role"].port, reqs["api-role"])[0] != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API role never answered 200 (see {envoys['api-role'].log})")
                time.sleep(0.1)
            for n in names:
                R.load(envoys[n].port, reqs[n], args.rewarm, 16)
            for n in names[r % 2:] + names[: r % 2]:
                e = envoys[n]
                t0 = R.cpu_ns(e.pid)
                res = R.load(e.port, reqs[n], args.api_requests, 16)
                t1 = R.cpu_ns(e.pid)
                if not R.as_expected(res, "2xx", args.api_requests):
                    raise SystemExit(f"api / {n}: unexpected answers {res}")
                cpu[n].append((t1 - t0) / 1e3 / args.api_requests)
                lat[n].append(latency(e.port, reqs[n], args.api_rate * 2, args.api_rate, lf))
            R.log(f"api round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {cpu[n][-1]:.1f} us {lat[n][-1]}" for n in names))
    finally:
        for e in envoys.values():
            e.stop()
    return cpu, lat


def git_describe():
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=R.ROOT, capture_output=True,
                          text=True).stdout.strip()


def quartiles(xs):
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def spread(xs, sign="+"):
    lo, mid, hi = quartiles(xs)
    return f"{mid:{sign}.1f} ({lo:{sign}.1f} … {hi:{sign}.1f})"


def stderr(xs):
    """The standard error of a median, from the interquartile range (a normal's σ is
    IQR / 1.349; the median's error is 1.2533 σ / √n): robust to the bursts."""
    lo, _, hi = quartiles(xs)
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
        out.append(f"| the full gate, Envoy CPU per push | default | | {spread(full, '')} | {stderr(full):.1f} |")
        out.append(f"| the full gate − noop-wasm | default | | {spread(d_noop)} | {stderr(d_noop):.1f} |")
        for f, what, how in rows:
            d = [a - b for a, b in zip(full, cpu[f])] if how == "no" else [b - a for a, b in zip(full, cpu[f])]
            out.append(f"| {what} | `{f}` | {how} | {spread(d)} | {stderr(d):.1f} |")
    if "api" in results:
        cpu, lat = results["api"]
        d = [a - b for a, b in zip(cpu["api-role"], cpu["plain"])]
        out += ["", f"**The API role** (`GET /wechat-api/mp/cgi-bin/user/info`, the gate calling mock-api with the "
                f"real token) against a plain Envoy route to the same mock-api (`GET /cgi-bin/user/info?access_token=…`), "
                f"{args.rounds} rounds × {args.api_requests} calls over 16 connections; latency at "
                f"{args.api_rate} calls/s over 4 connections, p50 / p99 medians over rounds:", "",
                "| route | Envoy CPU per call (µs, interquartile range) | latency p50 / p99 (µs) |", "|---|---|---|"]
        for n, label in (("plain", "plain route"), ("api-role", "API role")):
            p50 = statistics.median(x[0] for x in lat[n])
            p99 = statistics.median(x[1] for x in lat[n])
            out.append(f"| {label} | {spread(cpu[n], '')} | "
                       f"{p50:.0f} / {p99:.0f} |")
        dp50 = statistics.median(a[0] - b[0] for a, b in zip(lat["api-role"], lat["plain"]))
        out.append(f"| API role − plain | {spread(d)} | {dp50:+.0f} (p50, median of per-round differences) |")
    return "\n".join(out) + "\n"


def write_section(text):
    old = R.RESULTS.read_text()
    at = old.find("\n" + SECTION)
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
            if g in GROUPS:
                results[g] = run_group(envoy_bin, up, g, wasm, args)
            elif g == "api":
                results[g] = run_api(envoy_bin, args)
            else:
                raise SystemExit(f"unknown group {g}")
    finally:
        R.PROCS.stop_all()
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    (WASM_DIR / "raw.json").write_text(json.dumps(results, indent=1))
    text = render(results, args, load_before, load_after, started, (time.monotonic() - t_start) / 60)
    print(text)
    if not args.no_write:
        write_section(text)
        R.log(f"written to {R.RESULTS.relative_to(R.ROOT)}, section \"{SECTION[3:]}\"")


if __name__ == "__main__":
    main()
