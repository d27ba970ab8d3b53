#!/usr/bin/env python3
"""`make bench`: the same traffic through several Envoy setups, interleaved, plus the
criterion micro-benchmarks; prints a Markdown report and writes bench/results.md.

Setups (one Envoy each, all forwarding to the same fast upstream process):
  passthrough        no filter
  noop-wasm          a proxy-wasm module that does nothing (bench/noop-wasm)
  wechat-gate        the filter, static allowlist, dedupe_seconds 0 (decides on the headers)
  wechat-gate-bare   the same with timestamp_tolerance_seconds 0 too (no table at all)
  wechat-gate-defaults  the filter with the defaults (dedupe 15 s, replay table), hold mode
  wechat-gate-hold   the filter reading the body, held (allow_on_headers_stop_iteration)
  wechat-gate-stream the filter reading the body, streamed (no such flag)
  wechat-gate-live   the filter, allowlist = the live callback IP list from mock-api
  other-route        the filter in the chain, disabled on the route the traffic takes
  lua                the same checks in Envoy's Lua filter (bench/lua/wechat_gate.lua)
  ext_authz          Envoy's HTTP ext_authz calling `wg-bench authz` (wechat-gate's core)
  wechat-gate-safe   the filter with safe_mode, hold mode (skipped while the filter refuses it)
  wechat-gate-safe-stream  the same in stream mode

Workloads: verified POST (forwarded), GET handshake, forged POST (401), a verified POST
without MsgId (forwarded; the body-reading setups' workload), the verified POST with a
MsgId of its own per push (the defaults' workload), and safe-mode POSTs of 0.5 KiB and
8 KiB. Every request carries a signed query of its own (the gate answers a
reused one itself), and every run is checked to have taken the path it is meant to
measure (the gate's counters, what the upstream received). bench/README.md explains
every choice.
Only Python's standard library; needs taskset, Envoy 1.40 and bench/tools (`wg-bench load` is the
load generator: h2load cannot give every request a URI of its own).
"""

import argparse
import datetime
import hashlib
import http.client
import itertools
import json
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
WG_BENCH = ROOT / "target/release/wg-bench"
NOOP_WASM = ROOT / "target/wasm32-wasip1/release/noop_wasm.wasm"
GATE_WASM = ROOT / "target/wasm32-wasip1/release/wechat_gate.wasm"
CLI = ROOT / "target/release/wechat-gate"
LUA_SCRIPT = BENCH / "lua/wechat_gate.lua"
MICRO_TARGET = BENCH / "target/micro"
RESULTS = BENCH / "results.md"

TOKEN = "bench-token-0123456789"
APPID = "wx0123456789abcdef"
SECRET = "bench-appsecret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 base64 characters
ECHOSTR = "5838479218127813673"  # what `wg-bench gen` puts in the handshake

CLK_TCK = os.sysconf("SC_CLK_TCK")
NPROC = os.cpu_count() or 1
# Envoy on core 0, everything else (the load generator, upstream, ext_authz service, mock-api) on
# core 1: the load generator never steals the measured Envoy's core.
ENVOY_CPU = "0" if NPROC >= 2 else None
LOAD_CPU = "1" if NPROC >= 2 else None

WORKLOADS = {
    "post": "verified POST (forwarded)",
    "get": "GET handshake",
    "forged": "forged POST (401)",
    "anon": "verified POST, no MsgId (forwarded)",
    "unique": "verified POST, defaults, every push unique (forwarded)",
    "aes512": "safe-mode POST 0.5 KiB",
    "aes8k": "safe-mode POST 8 KiB",
}
PLAIN = ["post", "get", "forged"]
SAFE = ["aes512", "aes8k"]
# The token a workload's queries are signed with (the forged POST: another one).
FORGED_TOKEN = "not-the-token"
# The verified POST's MsgId (`wg-bench gen`): in the "unique" workload every push gets a
# number of its own in its place (same length), so that the defaults' duplicate
# suppression finds nothing to suppress.
MSGID = "1234567890123456"
UNIQUE = iter(range(10**15, 10**16))


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------ processes


from procs import PROCS, stop_all_on_signals  # noqa: E402

stop_all_on_signals()


def start_server(name, args, cpu=LOAD_CPU, env=None):
    """Starts a helper that prints `... listening on http://127.0.0.1:PORT`; returns (proc, port)."""
    logf = open(OUT / f"{name}.log", "w")
    env = dict(os.environ, **env) if env else None
    p = PROCS.spawn(args, cpu=cpu, stdout=subprocess.PIPE, stderr=logf, text=True, env=env)
    line = p.stdout.readline()
    if "listening on http://" not in line:
        raise SystemExit(f"{name} did not start: {line!r} (see {OUT / (name + '.log')})")
    port = int(line.strip().rsplit(":", 1)[1])
    return p, port


# ------------------------------------------------------------------ HTTP helpers


# Seconds a single request may take (bench/instructions.py raises it: under valgrind a
# cold Envoy takes longer).
REQUEST_TIMEOUT = 5


def http_request(port, method, path, body=b"", headers=None, timeout=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout or REQUEST_TIMEOUT)
    try:
        hdrs = dict(headers or {})
        if method == "POST":
            hdrs.setdefault("content-type", "text/xml")
        conn.request(method, path, body=body if method == "POST" else None, headers=hdrs)
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


def admin_get(admin, path):
    host, port = admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# ------------------------------------------------------------------ Envoy configs


def cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }


# Envoy hands the body to a filter that paused in the headers phase only with this flag:
# with it the gate reads a push's body in hold mode, without it in stream mode (it finds
# out by itself, per worker). Every gate setup gets it but the two *-stream ones.
GATE_PLUGIN = {"allow_on_headers_stop_iteration": True}

# The setups that read every push's body, and the mode each must settle in.
BODY_MODE = {
    "wechat-gate-defaults": "hold",
    "wechat-gate-hold": "hold",
    "wechat-gate-stream": "stream",
    "wechat-gate-safe": "hold",
    "wechat-gate-safe-stream": "stream",
}


def wasm_filter(name, wasm, config=None, extra=None):
    plugin = {
        "name": name,
        "root_id": name,
        "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm)}}},
    }
    if config is not None:
        plugin["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(config)}
    plugin.update(extra or {})
    return {"name": name, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": plugin}}


# Every POST the bench sends carries the same body (one body file), so the same MsgId:
# with duplicate suppression on, all but the first would be answered `success` by the
# gate itself. Off for the setups that decide on the headers (set when this build knows
# the field: `wg-bench check-config`). The hold and stream setups keep the default 15
# and are sent a body without MsgId or FromUserName: read, nothing to deduplicate.
DEDUPE_OFF = {"dedupe_seconds": 0}
DEDUPE_ON = {"dedupe_seconds": 15}


def gate_config(**extra):
    c = {"path": "/wechat", "token": TOKEN, "source": {"allow": ["127.0.0.1"]}}
    c.update(DEDUPE_OFF)
    c.update(extra)
    return c


# wechat-gate-defaults: nothing but what a push needs, every table as by default
# (duplicate suppression 15 s, the replay table); sent pushes with MsgIds of their own.
DEFAULTS_CONFIG = {"path": "/wechat", "token": TOKEN, "source": {"allow": ["127.0.0.1"]}}
# wechat-gate-bare: no freshness check, so no replay table, and no duplicate suppression:
# the gate decides on the headers alone and keeps no table.
BARE = {"timestamp_tolerance_seconds": 0}


def config_accepted(config):
    """Whether this build of wechat-gate accepts a configuration (its own parser, natively)."""
    p = subprocess.run([str(WG_BENCH), "check-config", json.dumps(config)], capture_output=True, text=True)
    return p.returncode == 0, p.stderr.strip()


def lua_source():
    text = LUA_SCRIPT.read_text()
    return (
        text.replace("@TOKEN@", TOKEN)
        .replace("@PATH@", "/wechat")
        .replace("@TOLERANCE@", "300")
        .replace("@MAX_BODY@", "65536")
        .replace("@ALLOW@", '"127.0.0.1"')
    )


# ext_authz: the header that carries the downstream address (ip:port, exactly the gate's
# `source.address`) to the service. Not x-forwarded-for: for a loopback peer Envoy
# appends its own local address to it, not the peer's.
SOURCE_HEADER = "x-wechat-gate-source"

ROUTE_ALL = {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "5s"}}


def envoy_config(setup, ports):
    """The Envoy configuration (as JSON, which is YAML) of a setup."""
    filters, routes = [], [ROUTE_ALL]
    clusters = [cluster("upstream", ports["upstream"])]
    if setup == "noop-wasm":
        filters = [wasm_filter("noop", NOOP_WASM)]
    elif setup == "wechat-gate":
        filters = [wasm_filter("wechat_gate", GATE_WASM, gate_config(), GATE_PLUGIN)]
    elif setup == "wechat-gate-bare":
        filters = [wasm_filter("wechat_gate", GATE_WASM, gate_config(**BARE), GATE_PLUGIN)]
    elif setup == "wechat-gate-defaults":
        filters = [wasm_filter("wechat_gate", GATE_WASM, DEFAULTS_CONFIG, GATE_PLUGIN)]
    elif setup == "wechat-gate-live":
        cfg = {
            "path": "/wechat",
            "appid": APPID,
            "token": TOKEN,
            "source": {"wechat_api": {"secret": SECRET, "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]}},
            **DEDUPE_OFF,
        }
        filters = [wasm_filter("wechat_gate", GATE_WASM, cfg, GATE_PLUGIN)]
        clusters.append(cluster("wechat_api", ports["mock_api"]))
    elif setup in ("wechat-gate-hold", "wechat-gate-stream"):
        cfg = gate_config(**(DEDUPE_ON if DEDUPE_OFF else {}))
        filters = [wasm_filter("wechat_gate", GATE_WASM, cfg, GATE_PLUGIN if BODY_MODE[setup] == "hold" else None)]
    elif setup in ("wechat-gate-safe", "wechat-gate-safe-stream"):
        cfg = gate_config(appid=APPID, safe_mode={"encoding_aes_key": AES_KEY, "decrypt": True})
        filters = [wasm_filter("wechat_gate", GATE_WASM, cfg, GATE_PLUGIN if BODY_MODE[setup] == "hold" else None)]
    elif setup == "other-route":
        filters = [wasm_filter("wechat_gate", GATE_WASM, gate_config(), GATE_PLUGIN)]
        routes = [
            dict(
                ROUTE_ALL,
                typed_per_filter_config={
                    "wechat_gate": {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
                },
            )
        ]
    elif setup == "lua":
        filters = [
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": lua_source()},
                },
            }
        ]
    elif setup == "ext_authz":
        filters = [
            {
                "name": "envoy.filters.http.ext_authz",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                    "transport_api_version": "V3",
                    "failure_mode_allow": False,
                    # The check request carries :method, :path (with the query) and the
                    # peer's address, set by Envoy (a client-sent header of that name is
                    # overwritten); no other client header is copied.
                    "allowed_headers": {"patterns": [{"exact": SOURCE_HEADER}]},
                    "http_service": {
                        "server_uri": {"uri": f"http://127.0.0.1:{ports['authz']}", "cluster": "authz", "timeout": "1s"},
                        "authorization_request": {"headers_to_add": [{"key": SOURCE_HEADER, "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}]},
                        "authorization_response": {
                            "allowed_upstream_headers": {"patterns": [{"prefix": "x-wechat-gate-"}]},
                            "allowed_client_headers": {"patterns": [{"exact": "content-type"}]},
                        },
                    },
                },
            }
        ]
        # The handshake must answer 200 + echostr, which a check cannot (any 200 from the
        # service means "allowed"): GET /wechat goes to the service as its upstream, with
        # ext_authz off on that route, and the service verifies and echoes.
        routes = [
            {
                "match": {"path": "/wechat", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
                "route": {"cluster": "authz", "timeout": "5s"},
                "request_headers_to_add": [
                    {"header": {"key": SOURCE_HEADER, "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                ],
                "typed_per_filter_config": {
                    "envoy.filters.http.ext_authz": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                        "disabled": True,
                    }
                },
            },
            ROUTE_ALL,
        ]
        clusters.append(cluster("authz", ports["authz"]))
    elif setup != "passthrough":
        raise ValueError(setup)
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "bench",
                                        "use_remote_address": True,
                                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                                        "http_filters": filters,
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


TAG = re.compile(r"\.?(\w+)=\.=(.*?);\.;")


def short_name(name):
    """A stat's name without its tags (`account=.=A;.;`): `forwarded.account=.=A;.;` is
    `forwarded`, `rejected_total.account=.=A;.;reason=.=signature;.;` is
    `rejected.signature` (the bench runs one account per Envoy)."""
    tags = dict(TAG.findall(name))
    base = TAG.sub("", name)
    if base == "rejected_total" and "reason" in tags:
        return f"rejected.{tags['reason']}"
    return base


class Envoy:
    def __init__(self, envoy_bin, name, config, concurrency=1, cpu=ENVOY_CPU):
        self.name = name
        self.dir = OUT / "envoy" / f"{name}-c{concurrency}"
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "envoy.yaml"
        cfg.write_text(json.dumps(config, indent=1))
        self.admin_file = self.dir / "admin.txt"
        if self.admin_file.exists():
            self.admin_file.unlink()
        self.log = self.dir / "envoy.log"
        self.started = time.monotonic()
        self.proc = PROCS.spawn(
            [
                envoy_bin, "-c", str(cfg), "--use-dynamic-base-id", "--concurrency", str(concurrency),
                "--admin-address-path", str(self.admin_file), "--log-level", "warn",
                # The gate says once, at info, which body mode it settled in.
                "--component-log-level", "wasm:info",
            ],
            cpu=cpu, cwd=self.dir, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.admin = None
        self.port = None

    def wait_ready(self, limit=60):
        """True when the listener is up; False (see .log) if Envoy exited or timed out."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.admin is None and self.admin_file.exists():
                text = self.admin_file.read_text().strip()
                if text:
                    self.admin = text
            if self.admin:
                try:
                    st, _ = admin_get(self.admin, "/ready")
                    if st == 200:
                        _, body = admin_get(self.admin, "/listeners?format=json")
                        port = json.loads(body)["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                        if port:
                            self.port = port
                            return True
                except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException):
                    pass
            time.sleep(0.01)
        return False

    def connections(self):
        """Downstream connections Envoy has accepted so far (its own counter)."""
        try:
            _, body = admin_get(self.admin, "/stats?filter=^http.bench.downstream_cx_total$")
            return int(body.decode().split(":")[1])
        except (OSError, ValueError, IndexError, http.client.HTTPException):
            return 0

    def gate_counters(self):
        """The gate's counters (`wasmcustom.wechat_gate.*`, gauges and the live list's
        refreshes left out); {} when the setup has no gate."""
        try:
            _, body = admin_get(self.admin, "/stats?filter=^wasmcustom.wechat_gate.")
        except (OSError, http.client.HTTPException):
            return {}
        out = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(":")
            name = short_name(name.strip().removeprefix("wasmcustom.wechat_gate."))
            if name and not name.startswith("allowlist."):
                try:
                    out[name] = int(value)
                except ValueError:
                    pass
        return out

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        PROCS.stop(self.proc)


def cpu_ticks(pid):
    """utime + stime of a whole process (every thread, live or gone), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_ns(pid):
    """CPU time of a process in nanoseconds: the sum over its threads of the time they
    have run (`/proc/PID/task/*/schedstat`, the scheduler's own clock, which is what
    utime + stime are rounded from; those come in 10 ms ticks, too coarse for a few µs
    per request over a few thousand requests). Threads that ended are not in it: take
    differences only over an interval in which Envoy starts and ends no thread (a
    steady Envoy does neither), and check against `cpu_ticks`."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ requests and load


def generate():
    """Every workload's request as `wg-bench gen` signs it: the template the load is
    made from (each request then gets a query of its own: `signed_paths`)."""
    out = subprocess.run(
        [str(WG_BENCH), "gen", "--token", TOKEN, "--appid", APPID, "--aes-key", AES_KEY],
        check=True, capture_output=True, text=True,
    ).stdout
    reqs = json.loads(out)
    # The body-reading setups' push: the text message without MsgId or FromUserName, so
    # that the gate reads it (dedupe_seconds 15) and finds nothing to deduplicate.
    reqs["anon"] = dict(reqs["post"], body=re.sub(r"<(MsgId|FromUserName)>.*?</\1>", "", reqs["post"]["body"]))
    # The defaults' push: the same message, its MsgId replaced per push (`load`, `one_request`).
    if MSGID not in reqs["post"]["body"]:
        raise SystemExit(f"the verified POST's body has no MsgId {MSGID}: the unique workload needs one")
    reqs["unique"] = dict(reqs["post"], unique=MSGID)
    bodies = OUT / "bodies"
    bodies.mkdir(exist_ok=True)
    for w in WORKLOADS:
        r = reqs[w]
        r["workload"] = w
        r["token"] = FORGED_TOKEN if w == "forged" else TOKEN
        if w in SAFE:
            m = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", r["body"])
            r["encrypt"] = m.group(1)
        if r["method"] == "POST":
            p = bodies / f"{w}.xml"
            p.write_text(r["body"])
            r["body_file"] = str(p)
    return reqs


def sha1_sorted(*parts):
    """WeChat's signature: SHA-1 of the parts sorted and joined (as bench/tools and the gate)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


# Nonces are never reused within a run; with the timestamp of the moment a batch is
# made, every query the bench sends is one the gate has not seen.
NONCES = itertools.count(random.randrange(1_000_000_000, 2_000_000_000))


def signed_paths(req, count, ts=None):
    """`count` paths for `req`'s workload, each with a query of its own: a fresh
    timestamp (now), a nonce never used before, the signature (and for safe mode the
    msg_signature over the body's Encrypt) computed for them."""
    path, query = req["path"].split("?", 1)
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    ts = str(int(time.time()) if ts is None else ts)
    out = []
    for _ in range(count):
        nonce = str(next(NONCES))
        values = {
            "signature": sha1_sorted(req["token"], ts, nonce),
            "timestamp": ts,
            "nonce": nonce,
        }
        if "encrypt" in req:
            values["msg_signature"] = sha1_sorted(req["token"], ts, nonce, req["encrypt"])
        q = urllib.parse.urlencode([(k, values.get(k, v)) for k, v in pairs], quote_via=urllib.parse.quote)
        out.append(f"{path}?{q}")
    return out


def unique_args(n):
    """`wg-bench load` arguments giving each of n pushes a MsgId of its own."""
    base = next(UNIQUE)
    for _ in range(n):
        next(UNIQUE)
    return ["--unique", MSGID, "--unique-base", str(base)]


def one_request(port, req, timeout=None):
    """One request of the workload, with a query of its own (and in the unique workload
    a MsgId of its own); (status, headers, body)."""
    body = req.get("body", "")
    if req.get("unique"):
        body = body.replace(req["unique"], str(next(UNIQUE)))
    body = body.encode()
    return http_request(port, req["method"], signed_paths(req, 1)[0], body, timeout=timeout)


def load(port, req, n, conns, rps=None, log_file=None, extra=None):
    """n requests of `req`'s workload over HTTP/1.1 on `conns` keep-alive connections
    (`wg-bench load`, on the load core), every request with a signed query of its own;
    `rps`: a fixed total rate instead of as fast as Envoy answers; `extra`: more
    `wg-bench load` arguments. In the unique workload every push also gets a MsgId of
    its own (`--unique`). Returns the summary
    (`done`, `2xx` … `5xx`, `errored`, `failed` as h2load counts it, `rps`, `connects`).

    Not h2load: its URI list (`-i FILE`) starts again at the first URI for every client
    (nghttp2 1.52), so `-c 16` sends each URI 16 times and the gate answers all but the
    first as replays; one h2load per connection made the load core the bottleneck
    (bench/tools/src/load.rs)."""
    udir = OUT / "uris"
    udir.mkdir(parents=True, exist_ok=True)
    # One list per thread: bench/instructions.py runs loads side by side.
    f = udir / f"uris-{threading.get_ident()}.txt"
    f.write_text("".join(p + "\n" for p in signed_paths(req, n)))
    args = [str(WG_BENCH), "load", "--connect", f"127.0.0.1:{port}", "--uris", str(f), "-c", str(conns),
            "--method", req["method"]]
    if req["method"] == "POST":
        args += ["--body", req["body_file"], "--header", "content-type: text/xml"]
    if req.get("unique"):
        args += unique_args(n)
    if rps:
        args += ["--rps", str(rps)]
    if log_file:
        args += ["--log-file", str(log_file)]
    args += extra or []
    if LOAD_CPU is not None:
        args = ["taskset", "-c", LOAD_CPU] + args
    p = subprocess.run(args, capture_output=True, text=True)
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"done": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "errored": n, "rps": 0.0, "connects": 0}
    res["ok"] = p.returncode == 0
    res["failed"] = res["errored"] + res["4xx"] + res["5xx"]
    if p.returncode != 0:
        res["stderr"] = p.stderr[-500:]
    return res


def expected_class(setup, workload):
    if workload == "forged" and setup in GATES:
        return "4xx"
    return "2xx"


def as_expected(res, want, n):
    """Every request answered, all with the expected status class (h2load counts 4xx as failed)."""
    return res.get("done") == n and res[want] == n and not res["errored"] and (want != "2xx" or not res["failed"])


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


# ------------------------------------------------------------------ the run

# The proxy-wasm gate's setups (they have its counters and its table of used queries),
# and every setup that checks the signature.
WASM_GATES = {"wechat-gate", "wechat-gate-bare", "wechat-gate-defaults", "wechat-gate-live", "wechat-gate-hold",
              "wechat-gate-stream", "wechat-gate-safe", "wechat-gate-safe-stream"}
GATES = WASM_GATES | {"lua", "ext_authz"}
ORDER = ["passthrough", "noop-wasm", "wechat-gate", "wechat-gate-bare", "wechat-gate-defaults", "wechat-gate-hold",
         "wechat-gate-stream", "wechat-gate-live", "other-route", "lua", "ext_authz", "wechat-gate-safe",
         "wechat-gate-safe-stream"]
SAFE_SETUPS = ("wechat-gate-safe", "wechat-gate-safe-stream")


def workloads_of(setup):
    """A setup's workloads; a body-reading setup's first is the one its body mode is
    settled with."""
    if setup in ("passthrough", "noop-wasm"):
        return PLAIN + ["anon", "unique"] + SAFE
    if setup == "wechat-gate":
        return PLAIN + ["anon"]
    if setup == "wechat-gate-bare":
        return ["post"]
    if setup == "wechat-gate-defaults":
        return ["unique"]
    if setup in ("wechat-gate-hold", "wechat-gate-stream"):
        return ["anon"]
    if setup in SAFE_SETUPS:
        return SAFE
    if setup == "lua":
        return PLAIN + ["unique"]
    return PLAIN


def check_once(setup, envoy_port, workload, req, plain_len):
    """One request through the setup; None if it behaved as it should, else what it did."""
    st, hdrs, resp = one_request(envoy_port, req)
    up = hdrs.get("x-bench-upstream", "")
    gate = setup in GATES
    want = None
    if workload in ("post", "anon", "unique"):
        want = (200, "v=1" if gate else "v=0", None)
    elif workload == "get":
        want = (200, None, ECHOSTR if gate else "success")
    elif workload == "forged":
        want = (401, None, None) if gate else (200, "v=0", None)
    else:  # safe mode
        want = (200, f"v=1;enc=0;len={plain_len}", None) if gate else (200, "v=0;enc=1", None)
    status, up_prefix, body_text = want
    got = f"{st} upstream=[{up}] body={resp[:80]!r}"
    if st != status:
        return got
    if up_prefix and not up.startswith(up_prefix):
        return got
    if body_text is not None and resp.decode(errors="replace") != body_text:
        return got
    return None


# ------------------------------------------------------------------ the path each run takes


def upstream_received(port):
    """What the upstream has received so far: {requests, verified, encrypted}."""
    _, _, body = http_request(port, "GET", "/_bench/stats")
    return {k: int(v) for k, v in (x.split("=") for x in body.decode().split())}


def expected_path(setup, workload, n):
    """What n requests of a workload must do in a setup: how much each of the gate's
    counters rises (those not named: not at all) and what the upstream receives."""
    gate = setup in GATES
    forwarded = workload in ("post", "anon", "unique", *SAFE) or not gate
    counters = {}
    if setup in WASM_GATES:
        if workload == "get":
            counters = {"handshake": n}
        elif workload == "forged":
            counters = {"rejected.signature": n}
        else:
            counters = {"forwarded": n}
            if workload in SAFE:
                counters["decrypted"] = n
    upstream = {
        "requests": n if forwarded else 0,
        "verified": n if forwarded and gate else 0,
        "encrypted": n if forwarded and workload in SAFE and not gate else 0,
    }
    return counters, upstream


def path_snapshot(e, upstream_port):
    return e.gate_counters(), upstream_received(upstream_port)


def settle(envoys):
    """Waits until every gate has handed Envoy the counts of the requests it has had: a
    worker keeps its counts and flushes them at the end of its last open stream and from
    its tick, at least once a second, so after one tick period nothing is pending."""
    time.sleep(1.1)


def path_problems_settled(setup, workload, n, before, e, upstream_port, limit=2.5):
    """`path_problems` once the counts of the run are in: a worker flushes its counts
    at the end of its last open stream, else from its next tick (within a second), so
    the check is repeated until it passes or a tick period and more have gone by."""
    deadline = time.monotonic() + limit
    while True:
        problems = path_problems(setup, workload, n, before, path_snapshot(e, upstream_port))
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.05)


def path_problems(setup, workload, n, before, after):
    """How a run of n requests strayed from the path it is meant to measure ([] if not):
    a forwarded push must rise `forwarded` by n and nothing else (no replay, no
    duplicate, no rejection), and reach the upstream n times, verified."""
    want_c, want_u = expected_path(setup, workload, n)
    (c0, u0), (c1, u1) = before, after
    problems = []
    if setup in WASM_GATES:
        for k in sorted(set(c0) | set(c1) | set(want_c)):
            d = c1.get(k, 0) - c0.get(k, 0)
            if d != want_c.get(k, 0):
                problems.append(f"{k} +{d} (want +{want_c.get(k, 0)})")
    for k, v in want_u.items():
        d = u1.get(k, 0) - u0.get(k, 0)
        if d != v:
            problems.append(f"upstream {k} +{d} (want +{v})")
    return problems


# ------------------------------------------------------------------ Envoys, round by round


def start_envoys(envoy_bin, setups, ports):
    """Starts every setup's Envoy at once; returns ({setup: Envoy}, {setup: its log} for
    those that did not start)."""
    started = {s: Envoy(envoy_bin, s, envoy_config(s, ports)) for s in setups}
    failed = {}
    for s, e in started.items():
        if not e.wait_ready():
            failed[s] = e.log_text()
            e.stop()
    return {s: e for s, e in started.items() if s not in failed}, failed


BODY_MODE_LINE = re.compile(r"wechat-gate reads push bodies in (hold|stream) mode")


def prepare(envoys, reqs):
    """Before anything is timed on fresh Envoys: the live list is in, and every
    body-reading gate has settled its body mode (it holds its first pushes as probes:
    one body handed over while held settles hold, body bytes Envoy counted but kept
    back settle stream).
    Returns {setup: what went wrong}."""
    problems = {}
    if "wechat-gate-live" in envoys:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st, _, _ = one_request(envoys["wechat-gate-live"].port, reqs["post"])
            if st != 503:
                break
            time.sleep(0.05)
        else:
            problems["wechat-gate-live"] = "the live list never loaded (503 for 30 s)"
    for s, want in BODY_MODE.items():
        if s not in envoys:
            continue
        e = envoys[s]
        req = reqs[workloads_of(s)[0]]
        mode = None
        for _ in range(20):  # one after the other: each may be a probe
            one_request(e.port, req)
            m = BODY_MODE_LINE.search(e.log_text())
            if m:
                mode = m.group(1)
                break
        if mode != want:
            problems[s] = f"settled in {mode or 'no'} body mode, not {want} (see {e.log})"
    return problems


def run(args):
    envoy_bin = os.environ.get("ENVOY_BIN") or subprocess.run(
        [str(ROOT / "scripts/ensure-envoy.sh"), "--pinned"], check=True, capture_output=True, text=True
    ).stdout.strip()
    envoy_version = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True).stdout.strip().split("version:")[-1].strip()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {"envoy_version": envoy_version, "started": datetime.datetime.now().astimezone(), "git": git or "unknown",
              "load_before": os.getloadavg()}

    if not args.no_build:
        build()
    for path, what in [(GATE_WASM, "make build"), (CLI, "make build"), (NOOP_WASM, "bench/run.py"), (WG_BENCH, "bench/run.py")]:
        if not path.is_file():
            raise SystemExit(f"{path} is missing (built by {what})")

    report["micro"] = {} if args.no_micro else micro(args)

    global DEDUPE_OFF
    ok, why = config_accepted(gate_config())
    if not ok:
        log(f"this build refuses dedupe_seconds ({why}): left out of the configurations")
        DEDUPE_OFF = {}

    # ---- helpers: upstream, ext_authz service, mock-api
    _, upstream_port = start_server("upstream", [str(WG_BENCH), "upstream", "--listen", "127.0.0.1:0"])
    authz_proc, authz_port = start_server(
        "authz", [str(WG_BENCH), "authz", "--listen", "127.0.0.1:0", "--config", json.dumps(gate_config())]
    )
    _, mock_port = start_server(
        "mock-api",
        [str(CLI), "mock-api", "--listen", "127.0.0.1:0", "--appid", APPID, "--callback-ip", "127.0.0.1"],
        env={"WECHAT_APPSECRET": SECRET},
    )
    ports = {"upstream": upstream_port, "authz": authz_port, "mock_api": mock_port}
    extra_cpu = {"ext_authz": authz_proc.pid}

    # ---- start every setup's Envoy (concurrency 1)
    setups = [s for s in ORDER if not args.setups or s in args.setups]
    envoys, failed = start_envoys(envoy_bin, setups, ports)
    for s, text in failed.items():
        if s in SAFE_SETUPS:
            reason = next((l for l in text.splitlines() if "safe_mode" in l or "refused" in l), text.strip().splitlines()[-1:] or [""])
            reason = reason if isinstance(reason, str) else reason[0]
            log("safe mode: not available in this build")
            log(f"  (Envoy refused the safe-mode configuration: {reason.strip()[:300]})")
            report["safe_mode"] = f"not available in this build: {reason.strip()[:300]}"
            continue
        raise SystemExit(f"Envoy for {s} did not start:\n{text[-3000:]}")
    setups = [s for s in setups if s in envoys]
    for s in setups:
        log(f"{s}: Envoy pid {envoys[s].pid} on 127.0.0.1:{envoys[s].port}")

    # ---- the live list in, body modes settled, every cell checked once: a cell that
    # does not do what it is meant to is not timed
    reqs = generate()
    cells = [(s, w) for s in setups for w in workloads_of(s)]
    broken = {}
    for s, why in prepare(envoys, reqs).items():
        for w in workloads_of(s):
            broken[(s, w)] = why
        log(f"CHECK FAILED {s}: {why}")
    for s, w in cells:
        if (s, w) in broken:
            continue
        why = check_once(s, envoys[s].port, w, reqs[w], reqs.get(f"{w}_plain_len"))
        if why:
            broken[(s, w)] = why
            log(f"CHECK FAILED {s} / {w}: {why}")
    cells = [c for c in cells if c not in broken]
    report["broken"] = broken

    # ---- warm-up and per-setup request counts (each CPU run lasts about --run-seconds)
    n_of = {}
    for s, w in cells:
        res = load(envoys[s].port, reqs[w], args.warmup, args.connections)
        n = int(max(args.min_requests, res["rps"] * args.run_seconds) // 1000 * 1000) or args.min_requests
        n_of[(s, w)] = n
    # Hold and stream are compared run against run: the same request count for both.
    for hold, stream in [("wechat-gate-hold", "wechat-gate-stream"), ("wechat-gate-safe", "wechat-gate-safe-stream")]:
        for w in WORKLOADS:
            if (hold, w) in n_of and (stream, w) in n_of:
                n_of[(hold, w)] = n_of[(stream, w)] = max(n_of[(hold, w)], n_of[(stream, w)])
    log("requests per CPU run: " + ", ".join(f"{s}/{w}={n}" for (s, w), n in n_of.items()))

    # ---- rounds: every cell once per round. Within a round each workload runs through
    # every setup back to back, in an order rotated per round, so that cells compared
    # with each other are measured close in time; drift hits all alike.
    # Samples are kept per round: ratios are taken within a round, then the median.
    # Every round but the first starts on fresh Envoys (all setups alike, warmed up
    # again): the gate's table of used queries is one Envoy's, holds 262,144 entries and
    # keeps each about 306 s, and its shards grow with what they hold, so one Envoy
    # taking every round's traffic would be measured on a fuller table round by round.
    # One round's traffic per Envoy stays near 10 % of the table.
    samples = {c: {k: {} for k in ("cpu", "ticks", "svc", "rps", "p50", "p99", "cx")} | {"bad": 0, "stray": []} for c in cells}
    recorded = {s: [] for s in setups}  # queries each Envoy recorded, per round
    rounds = max(args.rounds, args.latency_rounds)

    def measured(r, c, n, res, want, before, what):
        """Checks a run: the statuses, and the path (counters, upstream). False if
        the run strayed, and then its figures are left out."""
        s, w = c
        if not as_expected(res, want, n):
            samples[c]["bad"] += 1
            log(f"  {s}/{w}{what}: {res}")
        problems = path_problems_settled(s, w, n, before, envoys[s], upstream_port)
        if problems:
            samples[c]["stray"].append(f"round {r + 1}{what}: " + ", ".join(problems))
            log(f"  {s}/{w}{what}: PATH CHECK FAILED: {', '.join(problems)}")
            return False
        return True

    for r in range(rounds):
        t0 = time.monotonic()
        if r > 0:
            for e in envoys.values():
                e.stop()
            envoys, failed = start_envoys(envoy_bin, setups, ports)
            if failed:
                raise SystemExit(f"round {r + 1}: Envoy for {', '.join(failed)} did not start:\n{list(failed.values())[0][-3000:]}")
            reqs = generate()
            for s, why in prepare(envoys, reqs).items():
                raise SystemExit(f"round {r + 1}: {s}: {why}")
            for c in cells:
                load(envoys[c[0]].port, reqs[c[1]], args.rewarm, args.connections)
        settle(envoys.values())
        order = setups[r % len(setups):] + setups[: r % len(setups)]
        for w in WORKLOADS:
            reqs = generate()
            for s in order:
                c = (s, w)
                if c not in samples:
                    continue
                e, want = envoys[s], expected_class(s, w)
                if r < args.rounds:
                    n = n_of[c]
                    path_before = path_snapshot(e, upstream_port)
                    cx_before = e.connections()
                    ticks_before, ns_before = cpu_ticks(e.pid), cpu_ns(e.pid)
                    svc_before = cpu_ticks(extra_cpu[s]) if s in extra_cpu else 0
                    res = load(e.port, reqs[w], n, args.connections)
                    ticks_after, ns_after = cpu_ticks(e.pid), cpu_ns(e.pid)
                    svc_after = cpu_ticks(extra_cpu[s]) if s in extra_cpu else 0
                    cx = (e.connections() - cx_before) / n
                    if measured(r, c, n, res, want, path_before, ""):
                        samples[c]["cx"][r] = cx
                        samples[c]["cpu"][r] = (ns_after - ns_before) / 1e3 / n
                        samples[c]["ticks"][r] = (ticks_after - ticks_before) / CLK_TCK * 1e6 / n
                        samples[c]["svc"][r] = (svc_after - svc_before) / CLK_TCK * 1e6 / n
                        samples[c]["rps"][r] = res["rps"]
            for s in order:
                c = (s, w)
                if c not in samples or r >= args.latency_rounds:
                    continue
                # Latency at a fixed, moderate rate.
                e, want = envoys[s], expected_class(s, w)
                lf = OUT / "latency.log"
                if lf.exists():
                    lf.unlink()
                total = int(args.rate * args.latency_seconds)
                path_before = path_snapshot(e, upstream_port)
                res = load(e.port, reqs[w], total, args.latency_conns, rps=args.rate, log_file=lf)
                if measured(r, c, total, res, want, path_before, " (latency run)"):
                    durations = sorted(int(line.split("\t")[2]) for line in lf.read_text().splitlines() if line.count("\t") >= 2)
                    samples[c]["p50"][r] = percentile(durations, 0.50)
                    samples[c]["p99"][r] = percentile(durations, 0.99)
        for s in setups:
            counters = envoys[s].gate_counters()
            recorded[s].append(counters.get("forwarded", 0) + counters.get("handshake", 0))
        log(f"round {r + 1}/{rounds} done in {time.monotonic() - t0:.0f} s")
    report["samples"] = samples
    report["n_of"] = n_of
    report["recorded"] = {s: max(v) for s, v in recorded.items() if v and max(v)}
    for e in envoys.values():
        e.stop()

    # ---- the API role against a plain route to the same mock-api
    if not args.no_api:
        log("the API role against a plain route ...")
        report["api"] = run_api(envoy_bin, args.api_rounds, args.api_requests, args.api_rate, args.rewarm)
    # ---- memory at --concurrency 4
    report["memory"] = memory(envoy_bin, ports, args)
    # ---- time from start to the first verified request with the live list
    report["startup"] = startup(envoy_bin, ports, args)
    report["wasm"] = {"wechat_gate.wasm": GATE_WASM.stat().st_size, "noop_wasm.wasm": NOOP_WASM.stat().st_size}
    report["args"] = args
    report["setups"] = setups
    report["finished"] = datetime.datetime.now().astimezone()
    report["load_after"] = os.getloadavg()
    text = render(report)
    RESULTS.write_text(text + soak_section())
    print()
    print(text)
    log(f"written to {RESULTS.relative_to(ROOT)}")


def soak_section():
    """The "## Soak" section of the results file (`make soak`'s, pasted by hand at its
    end): kept when the bench rewrites the rest."""
    try:
        old = RESULTS.read_text()
    except OSError:
        return ""
    at = old.find("\n## Soak")
    return "\n" + old[at:].lstrip("\n") if at >= 0 else ""


def build():
    log("building bench/noop-wasm (wasm32-wasip1) and bench/tools ...")
    # Both are members of the root workspace (not default ones): built into the root's target/.
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1", "-p", "noop-wasm", "--quiet"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-p", "wechat-gate-bench", "--quiet"], cwd=ROOT, check=True)


def micro(args):
    """criterion micro-benchmarks (crates/gate/benches/core.rs), natively; median ns per benchmark."""
    log("micro-benchmarks: cargo bench -p gate --bench core ...")
    env = dict(os.environ, CARGO_TARGET_DIR=str(MICRO_TARGET))
    # Benches always build with panic=unwind: keep what the bench build drags in (wechat,
    # its dev-dependency) on unwind too, so gate is built once (not once per panic strategy).
    env["CARGO_PROFILE_RELEASE_PANIC"] = "unwind"
    crit = MICRO_TARGET / "criterion"
    if crit.exists():
        shutil.rmtree(crit)
    subprocess.run(["cargo", "bench", "-p", "gate", "--bench", "core", "--quiet"], cwd=ROOT, env=env, check=True)
    results = {}
    for bench_json in crit.glob("**/new/benchmark.json"):
        meta = json.loads(bench_json.read_text())
        est = json.loads((bench_json.parent / "estimates.json").read_text())
        results[meta.get("full_id") or meta.get("title")] = est["median"]["point_estimate"]
    return results


def memory(envoy_bin, ports, args):
    """VmRSS of Envoy at --concurrency 4 after some traffic, per setup (median of trials)."""
    log("memory at --concurrency 4 ...")
    setups = ["passthrough", "noop-wasm", "wechat-gate", "wechat-gate-defaults", "lua"]
    # The defaults get pushes with MsgIds of their own: what both of their tables hold.
    workload = {"wechat-gate-defaults": "unique"}
    rss = {s: [] for s in setups}
    for t in range(args.memory_trials):
        for s in setups[t % len(setups):] + setups[: t % len(setups)]:
            e = Envoy(envoy_bin, s, envoy_config(s, ports), concurrency=4, cpu=None)
            if not e.wait_ready():
                raise SystemExit(f"Envoy {s} --concurrency 4 did not start:\n{e.log_text()[-2000:]}")
            reqs = generate()
            load(e.port, reqs[workload.get(s, "post")], 4000, 16)
            time.sleep(0.3)
            rss[s].append(vm_rss_kib(e.pid))
            e.stop()
    return rss


def startup(envoy_bin, ports, args):
    """Envoy start → listener answers, and → first verified (non-503) POST, live list."""
    log("start-up with the live list ...")
    ready, verified = [], []
    for _ in range(args.startup_trials):
        reqs = generate()
        body = reqs["post"]["body"].encode()
        e = Envoy(envoy_bin, "wechat-gate-live", envoy_config("wechat-gate-live", ports))
        t_ready = t_ok = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and t_ok is None:
            if e.proc.poll() is not None:
                break
            if e.port is None:
                if e.admin is None and e.admin_file.exists():
                    e.admin = e.admin_file.read_text().strip() or None
                if e.admin:
                    try:
                        _, b = admin_get(e.admin, "/listeners?format=json")
                        e.port = json.loads(b)["listener_statuses"][0]["local_address"]["socket_address"]["port_value"] or None
                    except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException):
                        pass
                if e.port is None:
                    time.sleep(0.005)
                    continue
            try:
                st, _, _ = http_request(e.port, "POST", reqs["post"]["path"], body, timeout=2)
            except (OSError, http.client.HTTPException):
                time.sleep(0.005)
                continue
            now = time.monotonic() - e.started
            if t_ready is None:
                t_ready = now
            if st != 503:
                t_ok = now
            else:
                time.sleep(0.005)
        e.stop()
        if t_ready is not None:
            ready.append(t_ready)
        if t_ok is not None:
            verified.append(t_ok)
    return {"ready": ready, "verified": verified, "trials": args.startup_trials}


# ------------------------------------------------------------------ the API role


def api_config(mock_port):
    """The API role as envoy/envoy.yaml's wechat_api_role listener has it (hold mode),
    calling mock-api as its only upstream."""
    cfg = envoy_config("passthrough", {"upstream": mock_port})
    gate = {
        "role": "api", "path": "/wechat-api/mp", "name": "mp", "platform": "official_account",
        "appid": APPID,
        "wechat_api": {"secret": SECRET, "token_api": "stable",
                       "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}], "timeout_ms": 5000},
        "callers": ["127.0.0.1"],
    }
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"].insert(0, wasm_filter("wechat_gate_api", GATE_WASM, gate, GATE_PLUGIN))
    cfg["static_resources"]["clusters"].append(cluster("wechat_api", mock_port))
    return cfg


def api_token(mock_port):
    body = json.dumps({"grant_type": "client_credential", "appid": APPID, "secret": SECRET}).encode()
    st, _, resp = http_request(mock_port, "POST", "/cgi-bin/stable_token", body, {"content-type": "application/json"})
    if st != 200 or b"access_token" not in resp:
        raise SystemExit(f"mock-api gave no token: {st} {resp[:200]!r}")
    return json.loads(resp)["access_token"]


def api_latency(port, req, n, rps, lf):
    res = load(port, req, n, 4, rps=rps, log_file=lf)
    if not as_expected(res, "2xx", n):
        raise SystemExit(f"api latency run: {res}")
    durations = sorted(int(line.split("\t")[2]) for line in lf.read_text().splitlines() if line.strip())
    return percentile(durations, 0.50), percentile(durations, 0.99)


def run_api(envoy_bin, rounds, requests, rate, rewarm):
    """The API role (`GET /wechat-api/mp/cgi-bin/user/info`, the gate calling mock-api
    with the real token; the module is GATE_WASM) against a plain route to the same
    mock-api (`GET /cgi-bin/user/info?access_token=…`), fresh Envoys every round, the
    order alternating: ({route: [µs of Envoy CPU per call, per round]}, {route: [(p50,
    p99) at `rate` calls/s, per round]}). `make bench` and `make bench-attribution` both
    report it."""
    env = dict(os.environ, WECHAT_APPSECRET=SECRET)
    mock_proc, mock = start_server("mock-api-role", [str(CLI), "mock-api", "--listen", "127.0.0.1:0", "--appid", APPID], env=env)
    token = api_token(mock)
    query = "openid=o_bench_user_000000000001&lang=zh_CN"
    reqs = {
        "api-role": {"method": "GET", "path": f"/wechat-api/mp/cgi-bin/user/info?{query}", "token": TOKEN},
        "plain": {"method": "GET", "path": f"/cgi-bin/user/info?access_token={urllib.parse.quote(token)}&{query}", "token": TOKEN},
    }
    names = list(reqs)
    cpu = {n: [] for n in names}
    lat = {n: [] for n in names}
    envoys = {}
    lf = OUT / "api-latency.log"
    try:
        for r in range(rounds):
            for e in envoys.values():
                e.stop()
            envoys = {"api-role": Envoy(envoy_bin, "api-role", api_config(mock)),
                      "plain": Envoy(envoy_bin, "api-plain", envoy_config("passthrough", {"upstream": mock}))}
            for n, e in envoys.items():
                if not e.wait_ready():
                    raise SystemExit(f"{n} did not start:\n{e.log_text()[-2000:]}")
            deadline = time.monotonic() + 30
            while one_request(envoys["api-role"].port, reqs["api-role"])[0] != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API role never answered 200 (see {envoys['api-role'].log})")
                time.sleep(0.1)
            for n in names:
                load(envoys[n].port, reqs[n], rewarm, 16)
            for n in names[r % 2:] + names[: r % 2]:
                e = envoys[n]
                t0 = cpu_ns(e.pid)
                res = load(e.port, reqs[n], requests, 16)
                t1 = cpu_ns(e.pid)
                if not as_expected(res, "2xx", requests):
                    raise SystemExit(f"api / {n}: unexpected answers {res}")
                cpu[n].append((t1 - t0) / 1e3 / requests)
                lat[n].append(api_latency(e.port, reqs[n], rate * 2, rate, lf))
            log(f"api round {r + 1}/{rounds}: " + ", ".join(f"{n} {cpu[n][-1]:.1f} us {lat[n][-1]}" for n in names))
    finally:
        for e in envoys.values():
            e.stop()
        PROCS.stop(mock_proc)
    return cpu, lat


def render_api(cpu, lat, rounds, requests, rate):
    """The API role's paragraph and table, as Markdown lines."""
    d = [a - b for a, b in zip(cpu["api-role"], cpu["plain"])]
    out = [f"**The API role** (`GET /wechat-api/mp/cgi-bin/user/info`, the gate calling mock-api with the "
           f"real token) against a plain Envoy route to the same mock-api (`GET /cgi-bin/user/info?access_token=…`), "
           f"{rounds} rounds × {requests} calls over 16 connections; latency at "
           f"{rate} calls/s over 4 connections, p50 / p99 medians over rounds:", "",
           "| route | Envoy CPU per call (µs, interquartile range) | latency p50 / p99 (µs) |", "|---|---|---|"]
    for n, label in (("plain", "plain route"), ("api-role", "API role")):
        p50 = statistics.median(x[0] for x in lat[n])
        p99 = statistics.median(x[1] for x in lat[n])
        out.append(f"| {label} | {spread(cpu[n], '')} | {p50:.0f} / {p99:.0f} |")
    dp50 = statistics.median(a[0] - b[0] for a, b in zip(lat["api-role"], lat["plain"]))
    out.append(f"| API role − plain | {spread(d, '+')} | {dp50:+.0f} (p50, median of per-round differences) |")
    return out


def quartiles(xs):
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def spread(xs, sign="+"):
    """The median of xs with its interquartile range in brackets."""
    lo, mid, hi = quartiles(xs)
    return f"{mid:{sign}.1f} ({lo:{sign}.1f} … {hi:{sign}.1f})"


# ------------------------------------------------------------------ the report


def med(xs):
    xs = list(xs.values()) if isinstance(xs, dict) else list(xs)
    return statistics.median(xs) if xs else None


def per_round(a, b, op):
    """op(a[r], b[r]) for every round both have, as a list."""
    return [op(a[r], b[r]) for r in a if r in b]


def render(rep):
    args = rep["args"]
    samples = rep["samples"]
    setups = rep["setups"]
    broken = rep["broken"]
    cpu_model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def total(s, w):
        """Per round: Envoy CPU/request (+ the ext_authz service's)."""
        c = samples.get((s, w))
        if not c:
            return {}
        return {r: c["cpu"][r] + c["svc"].get(r, 0.0) for r in c["cpu"]}

    def ratio(s, w, series=total, base="passthrough"):
        """Median over rounds of value(s) / value(base), each pair from the same round."""
        a, b = series(s, w), series(base, w)
        return med(per_round(a, b, lambda x, y: x / y if y else float("nan")))

    def key_series(key):
        return lambda s, w: samples.get((s, w), {}).get(key, {})

    def missing(s, w):
        if (s, w) in broken:
            return "check failed"
        return "" if w not in workloads_of(s) else "n/a"

    def cell_cpu(s, w):
        t = total(s, w)
        if not t:
            return missing(s, w)
        c = samples[(s, w)]
        r = ratio(s, w)
        text = f"{med(t):.1f}" + (f" ({r:.2f}×)" if r else "")
        if s == "ext_authz":
            text += f" = {med(c['cpu']):.1f} Envoy + {med(c['svc']):.1f} svc"
        return text + (" ⚠" if c["bad"] else "")

    cols = [w for w in WORKLOADS if any((s, w) in samples or (s, w) in broken for s in setups)]
    lines = []
    out = lines.append
    out("# wechat-gate benchmark results")
    out("")
    out(f"- date: {rep['started']:%Y-%m-%d %H:%M %Z} (the run took {(rep['finished'] - rep['started']).total_seconds() / 60:.1f} min)")
    out(f"- machine: {NPROC} cores (`nproc`), CPU `{cpu_model}` (/proc/cpuinfo), {platform.system()} {platform.release()}")
    out(f"- Envoy: {rep['envoy_version']}; wechat-gate: {rep.get('git', 'unknown')}")
    if rep.get("load_before"):
        out(f"- machine load (1/5/15-min load average): {' '.join(f'{x:.2f}' for x in rep['load_before'])} before, "
            f"{' '.join(f'{x:.2f}' for x in rep['load_after'])} after (the bench itself keeps about 2 busy); "
            "the machine is shared: other work on it shows as noise between rounds")
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    out(f"- command: `make bench` (runs `python3 bench/run.py{' ' + argv if argv else ''}`)")
    pin = f"Envoy pinned to core {ENVOY_CPU}, the load generator and every helper process to core {LOAD_CPU}" if ENVOY_CPU else "no CPU pinning (1 core)"
    out(
        f"- method: Envoy `--concurrency 1`, {pin}; HTTP/1.1 keep-alive (`wg-bench load`, one thread polling every connection, as h2load). CPU and peak: {args.rounds} rounds, "
        f"{args.connections} connections, a fixed request count per cell (about {args.run_seconds} s of traffic). "
        f"Latency: {args.latency_rounds} rounds, {args.latency_conns} connections at {args.rate} req/s for {args.latency_seconds} s. "
        "Within a round every workload goes through every setup back to back, the setup order rotated per round; "
        "every round after the first on fresh Envoys, warmed up again. "
        "Figures are medians over rounds; a ratio is the median of the per-round ratios."
    )
    out(f"- requests: every request has a signed query of its own (fresh timestamp, a nonce never used in the run): "
        "the gate answers a reused query itself (`replayed`). Every run is checked to have taken its path: the gate's "
        "counters (a forwarded push: `forwarded` +n and no other counter moves) and what the upstream received "
        "(n requests, verified); a run that strays is left out and listed below.")
    out(f"- gate configuration: `{json.dumps(gate_config())}` (+ `allow_on_headers_stop_iteration: true`); "
        f"wechat-gate-hold and wechat-gate-stream: `dedupe_seconds` {DEDUPE_ON['dedupe_seconds'] if DEDUPE_OFF else 'default'}, "
        "with and without `allow_on_headers_stop_iteration`; wechat-gate-safe and wechat-gate-safe-stream: `safe_mode` "
        "(`decrypt: true`), with and without it; wechat-gate-bare: `timestamp_tolerance_seconds` 0 too (no table); "
        f"wechat-gate-defaults: `{json.dumps(DEFAULTS_CONFIG)}` (the defaults: duplicate suppression 15 s and the replay "
        "table), hold mode, sent the verified POST with a MsgId of its own per push. Each body-reading Envoy's log is "
        "checked for the mode it settled in.")
    rec = rep.get("recorded") or {}
    if rec:
        s_max = max(rec, key=rec.get)
        out(f"- table of used queries: at most {rec[s_max]:,} recorded by one Envoy in one round ({s_max}), "
            "of its 262,144 entries (8,192 shards × 32).")
    ns, ticks = 0.0, 0.0
    for c in samples.values():
        for r in c["cpu"]:
            if r in c["ticks"]:
                ns += c["cpu"][r]
                ticks += c["ticks"][r]
    if ticks:
        out(f"- CPU clock: the sum of Envoy's threads' run time (`/proc/PID/task/*/schedstat`, ns); over all runs it is "
            f"{ns / ticks:.3f}× utime+stime (`/proc/PID/stat`, 10 ms ticks).")
    if rep.get("safe_mode"):
        out(f"- safe mode: {rep['safe_mode']}")
    out("")
    hdr = "| setup | " + " | ".join(WORKLOADS[w] for w in cols) + " |"
    sep = "|---|" + "---|" * len(cols)

    out("## Envoy CPU per request (µs; × passthrough)")
    out("")
    out("CPU time of the Envoy process over a fixed request count; "
        "for ext_authz, Envoy + the verification service. ⚠: some responses did not have the expected status.")
    out("")
    out(hdr)
    out(sep)
    for s in setups:
        out(f"| {s} | " + " | ".join(cell_cpu(s, w) for w in cols) + " |")
    out("")
    closing = [(s, w, med(samples[(s, w)]["cx"])) for s in setups for w in cols if (s, w) in samples and samples[(s, w)]["cx"]]
    closing = [(s, w, x) for s, w, x in closing if x > 0.5]
    if closing:
        out("Envoy closed the client's connection after each response in: "
            + ", ".join(f"{s} / {WORKLOADS[w]} ({x:.2f} new connections per request)" for s, w, x in closing)
            + ". A request answered in the headers phase while its body is still unread ends its HTTP/1.1 "
            "connection, so those figures include a TCP accept and close per request.")
        out("")
    # ---- reading the body: hold or stream
    body_rows = [
        ("passthrough", "anon", "passthrough (no filter)"),
        ("noop-wasm", "anon", "noop-wasm"),
        ("wechat-gate", "anon", "gate, decided on the headers (`dedupe_seconds` 0)"),
        ("wechat-gate-hold", "anon", "gate, body read, **hold**"),
        ("wechat-gate-stream", "anon", "gate, body read, **stream**"),
        ("passthrough", "aes512", "passthrough, safe-mode POST 0.5 KiB"),
        ("noop-wasm", "aes512", "noop-wasm, safe-mode POST 0.5 KiB"),
        ("wechat-gate-safe", "aes512", "gate, safe mode 0.5 KiB, **hold**"),
        ("wechat-gate-safe-stream", "aes512", "gate, safe mode 0.5 KiB, **stream**"),
        ("wechat-gate-safe", "aes8k", "gate, safe mode 8 KiB, hold"),
        ("wechat-gate-safe-stream", "aes8k", "gate, safe mode 8 KiB, stream"),
    ]
    body_rows = [row for row in body_rows if total(*row[:2])]

    def vs_noop_table(rows):
        """(setup, workload, label) rows: CPU per push, and × and − noop-wasm on the same
        workload (medians of per-round values)."""
        out("| setup | Envoy CPU per push | × noop-wasm | − noop-wasm (µs) | per round |")
        out("|---|---|---|---|---|")
        for s, w, label in rows:
            t_ = total(s, w)
            r = ratio(s, w, base="noop-wasm")
            d = med(per_round(t_, total("noop-wasm", w), lambda a, b: a - b))
            rounds_ = ", ".join(f"{t_[k]:.0f}" for k in sorted(t_))
            out(f"| {label} | {med(t_):.1f} | " + (f"{r:.2f}×" if r else "") + " | "
                + (f"{d:+.1f}" if d is not None else "") + f" | {rounds_} |")
        out("")

    # ---- the defaults, and the gate with no table
    push_rows = [
        ("passthrough", "unique", "passthrough (no filter)"),
        ("noop-wasm", "unique", "noop-wasm"),
        ("lua", "unique", "lua"),
        ("wechat-gate-defaults", "unique", "gate, **the defaults** (duplicate suppression 15 s, replay table, hold)"),
        ("noop-wasm", "post", "noop-wasm, verified POST"),
        ("wechat-gate", "post", "gate, replay table only (`dedupe_seconds` 0), verified POST"),
        ("wechat-gate-bare", "post", "gate, **no table** (`timestamp_tolerance_seconds` 0, `dedupe_seconds` 0), verified POST"),
    ]
    push_rows = [row for row in push_rows if total(*row[:2])]
    if any(s in ("wechat-gate-defaults", "wechat-gate-bare") for s, _, _ in push_rows):
        out("## The cost of a push with the defaults (Envoy CPU per push, µs)")
        out("")
        out("The first rows share one workload: the verified POST, every push a fresh signed query and a MsgId of its "
            "own (`wg-bench load --unique`), so the defaults read each body, record the push in both tables and "
            "forward it. The last rows are the verified POST of the table above (one MsgId), decided on the headers. "
            "Ratios and differences are medians of per-round values (same workload, same round).")
        out("")
        vs_noop_table(push_rows)
    if any(s in BODY_MODE for s, _, _ in body_rows):
        out("## Reading a push's body: hold or stream (Envoy CPU per push, µs)")
        out("")
        out("The plaintext rows share one workload: a verified POST whose text message has no `MsgId` or "
            "`FromUserName` (the load sends one body file, so a message id would make every push after the first a "
            "duplicate): the hold and stream gates (`dedupe_seconds` 15) read its body, find nothing to deduplicate "
            "and forward it. Ratios and differences are medians of per-round values (same workload, same round).")
        out("")
        vs_noop_table(body_rows)
        for hold, stream, w, label in [
            ("wechat-gate-hold", "wechat-gate-stream", "anon", "plaintext, body read"),
            ("wechat-gate-safe", "wechat-gate-safe-stream", "aes512", "safe mode 0.5 KiB"),
            ("wechat-gate-safe", "wechat-gate-safe-stream", "aes8k", "safe mode 8 KiB"),
            ("wechat-gate", "wechat-gate-hold", "anon", None),
        ]:
            a, b = total(stream, w), total(hold, w)
            diffs = per_round(a, b, lambda x, y: x - y)
            if not diffs:
                continue
            what = f"stream − hold, {label}" if label else "hold − decided on the headers (the cost of reading the body, held)"
            out(f"- {what}: **{med(diffs):+.1f} µs** per push (median of {len(diffs)} rounds; per round: "
                + ", ".join(f"{x:+.0f}" for x in diffs) + ")")
        out("")
    stray = [(s, w, x) for (s, w), c in samples.items() for x in c["stray"]]
    if stray:
        out("**Runs left out** (they did not take the path they are meant to measure):")
        out("")
        for s, w, x in stray:
            out(f"- {s} / {WORKLOADS[w]}: {x}")
        out("")
    out(f"## Latency at {args.rate} req/s (µs, p50 / p99, as the load generator sees it)")
    out("")
    out(hdr)
    out(sep)
    for s in setups:
        row = []
        for w in cols:
            c = samples.get((s, w))
            if c and c["p50"]:
                r50, r99 = ratio(s, w, key_series("p50")), ratio(s, w, key_series("p99"))
                row.append(f"{med(c['p50']):.0f} / {med(c['p99']):.0f}" + (f" ({r50:.2f}× / {r99:.2f}×)" if r50 else ""))
            else:
                row.append(missing(s, w))
        out(f"| {s} | " + " | ".join(row) + " |")
    out("")
    out("## Peak requests/s (one Envoy worker; × passthrough)")
    out("")
    out("In brackets: how busy Envoy's core was (CPU/request × req/s); near 100 % Envoy is the bottleneck.")
    out("")
    out(hdr)
    out(sep)
    for s in setups:
        row = []
        for w in cols:
            c = samples.get((s, w))
            if c and c["rps"]:
                r = ratio(s, w, key_series("rps"))
                busy = med(per_round(c["cpu"], c["rps"], lambda x, y: x * y / 1e4))
                row.append(f"{med(c['rps']):.0f}" + (f" ({r:.2f}×)" if r else "") + f" [{busy:.0f} %]")
            else:
                row.append(missing(s, w))
        out(f"| {s} | " + " | ".join(row) + " |")
    out("")

    if rep.get("api"):
        out("## The API role (reported, no target)")
        out("")
        out("\n".join(render_api(*rep["api"], args.api_rounds, args.api_requests, args.api_rate)))
        out("")

    # ---- other figures
    out("## Size, memory, start-up")
    out("")
    out("| figure | value |")
    out("|---|---|")
    for name, size in rep["wasm"].items():
        out(f"| {name} | {size / 1024:.0f} KiB ({size} bytes) |")
    mem = rep["memory"]
    for s, xs in mem.items():
        if xs:
            out(f"| Envoy VmRSS, `--concurrency 4`, {s} | {med(xs) / 1024:.1f} MiB (trials: {', '.join(f'{x / 1024:.1f}' for x in xs)}) |")
    st = rep["startup"]
    if st["ready"]:
        out(f"| Envoy start → listener answers (gate with the live list) | {med(st['ready']) * 1000:.0f} ms (median of {len(st['ready'])}) |")
    out(
        "| Envoy start → first verified (non-503) POST with the live list | "
        + (f"{med(st['verified']) * 1000:.0f} ms (median of {len(st['verified'])}/{st['trials']})" if st["verified"] else "never (within 60 s)")
        + " |"
    )
    out("")
    micro_res = rep["micro"]
    if micro_res:
        out("## Micro-benchmarks (criterion, native, median)")
        out("")
        out("| benchmark | time |")
        out("|---|---|")
        for name, ns in sorted(micro_res.items()):
            out(f"| {name} | {fmt_ns(ns)} |")
        out("")

    # ---- targets
    out("## Targets (reported, never asserted)")
    out("")
    out("| target | measured | |")
    out("|---|---|---|")

    def target(text, measured, ok):
        mark = "n/a" if ok is None else ("met" if ok else "**missed**")
        out(f"| {text} | {measured} | {mark} |")

    def vs(a, b, w):
        """`a` vs `b` on workload w: medians, and the median per-round difference and ratio."""
        ta, tb = total(a, w), total(b, w)
        if not ta or not tb:
            return None
        d = med(per_round(ta, tb, lambda x, y: x - y))
        r = med(per_round(ta, tb, lambda x, y: x / y))
        return med(ta), med(tb), d, r

    v = vs("wechat-gate", "noop-wasm", "post")
    if v:
        target("verified POST: Envoy CPU/request within 5 µs of noop-wasm", f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs)", v[2] <= 5)
    v = vs("wechat-gate", "noop-wasm", "post")
    if v:
        target("verified POST: ≤ noop-wasm + 10 µs (issue 14)", f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs)", v[2] <= 10)
    v = vs("wechat-gate-stream", "wechat-gate-hold", "anon")
    if v:
        target("body read: stream within 5 µs of hold (issue 14)", f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs)", abs(v[2]) <= 5)
    ts, tp = total("wechat-gate-safe", "aes512"), total("wechat-gate-hold", "anon")
    if ts and tp:
        r = med(per_round(ts, tp, lambda x, y: x / y))
        target("safe-mode push 0.5 KiB ≤ 1.5× a plaintext push, both read and held (issue 14)",
               f"{med(ts):.1f} vs {med(tp):.1f} µs ({r:.2f}×)", r <= 1.5)
    v = vs("wechat-gate", "passthrough", "post")
    if v:
        target("verified POST: ≤ 1.25× passthrough", f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[3]:.2f}×)", v[3] <= 1.25)
    for w in PLAIN:
        v = vs("other-route", "passthrough", w)
        if v:
            target(f"other-route ≈ passthrough (within 5 %), {WORKLOADS[w]}", f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[3]:.2f}×)", abs(v[3] - 1) <= 0.05)
    for w in ["get", "forged"]:
        v = vs("wechat-gate", "passthrough", w)
        if v:
            target(f"{WORKLOADS[w]}: the gate answering costs less than passthrough forwarding the same request",
                   f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[3]:.2f}×)", v[3] < 1)
        ta, tp = total("wechat-gate", w), total("passthrough", "post")
        if ta and tp:
            r = med(per_round(ta, tp, lambda x, y: x / y))
            target(f"{WORKLOADS[w]}: the gate answering costs less than passthrough forwarding the verified POST",
                   f"{med(ta):.1f} vs {med(tp):.1f} µs ({r:.2f}×)", r < 1)
    v = vs("wechat-gate", "ext_authz", "post")
    if v:
        target("verified POST: gate ≤ 1/3 of ext_authz (Envoy + service)", f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[3]:.2f}×)", v[3] <= 1 / 3)
        g, x, p = total("wechat-gate", "post"), total("ext_authz", "post"), total("passthrough", "post")
        if p:
            over_g = med(per_round(g, p, lambda a, b: a - b))
            over_x = med(per_round(x, p, lambda a, b: a - b))
            target("(for reference) the same on the CPU above passthrough", f"{over_g:.1f} vs {over_x:.1f} µs", None)
    v = vs("wechat-gate", "lua", "post")
    if v:
        target("verified POST: gate cheaper than lua", f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[3]:.2f}×)", v[3] < 1)
    # Issue 21: the cost of a push with the defaults, of the gate with no table, of safe mode.
    v = vs("wechat-gate-defaults", "noop-wasm", "unique")
    if v:
        target("the defaults, every push unique: ≤ noop-wasm + 15 µs (issue 21)",
               f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs)", v[2] <= 15)
    v = vs("wechat-gate-defaults", "lua", "unique")
    if v:
        target("the defaults, every push unique: below lua (issue 21)",
               f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs, {v[3]:.2f}×)", v[2] < 0)
    v = vs("wechat-gate-bare", "noop-wasm", "post")
    if v:
        target("no table (`timestamp_tolerance_seconds` 0, `dedupe_seconds` 0), verified POST: ≤ noop-wasm + 8 µs (issue 21)",
               f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs)", v[2] <= 8)
    v = vs("wechat-gate-safe", "noop-wasm", "aes512")
    if v:
        target("safe mode 0.5 KiB, decrypted, hold: ≤ noop-wasm + 35 µs (issue 21)",
               f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs)", v[2] <= 35)
    v = vs("wechat-gate-safe", "noop-wasm", "aes8k")
    if v:
        target("(for reference) safe mode 8 KiB, decrypted, hold, − noop-wasm",
               f"{v[0]:.1f} vs {v[1]:.1f} µs ({v[2]:+.1f} µs)", None)
    for key, limit, label in [
        ("allowlist lookup 10000 entries (hit)", 100, "allowlist lookup < 100 ns at 10,000 entries (address listed)"),
        ("allowlist lookup 10000 entries (miss)", 100, "allowlist lookup < 100 ns at 10,000 entries (not listed)"),
        ("signature check", 1000, "signature check < 1 µs"),
    ]:
        if key in micro_res:
            target(label, fmt_ns(micro_res[key]), micro_res[key] < limit)
    size = rep["wasm"]["wechat_gate.wasm"]
    target("wechat_gate.wasm ≤ 350 KiB (issue 14)", f"{size / 1024:.0f} KiB", size <= 350 * 1024)
    if mem.get("wechat-gate") and mem.get("passthrough"):
        d = (med(mem["wechat-gate"]) - med(mem["passthrough"])) / 1024
        target("VmRSS with the gate at `--concurrency 4` ≤ passthrough + 10 MiB", f"{d:+.1f} MiB", d <= 10)
    if mem.get("wechat-gate-defaults") and mem.get("passthrough"):
        d = (med(mem["wechat-gate-defaults"]) - med(mem["passthrough"])) / 1024
        target("(for reference) VmRSS with the defaults (4,000 unique pushes) at `--concurrency 4` − passthrough",
               f"{d:+.1f} MiB", None)
    out("")
    out("How each setup is built, and why: bench/README.md.")
    return "\n".join(lines) + "\n"


def fmt_ns(ns):
    return f"{ns:.1f} ns" if ns < 1000 else f"{ns / 1000:.2f} µs"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9, help="rounds of CPU/peak runs")
    ap.add_argument("--latency-rounds", type=int, default=5, help="rounds of latency runs")
    ap.add_argument("--run-seconds", type=float, default=0.5, help="length of each CPU/peak run (sets its fixed request count)")
    ap.add_argument("--min-requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=2000, help="requests per cell before the first round (sets the request counts)")
    ap.add_argument("--rewarm", type=int, default=1000, help="requests per cell on the fresh Envoys of every later round")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=int, default=1000, help="req/s of the latency runs")
    ap.add_argument("--latency-seconds", type=float, default=1.5)
    ap.add_argument("--latency-conns", type=int, default=4)
    ap.add_argument("--memory-trials", type=int, default=3)
    ap.add_argument("--startup-trials", type=int, default=5)
    ap.add_argument("--setups", nargs="*", help="only these setups")
    ap.add_argument("--no-api", action="store_true", help="skip the API role against a plain route")
    ap.add_argument("--api-rounds", type=int, default=5, help="rounds of the API role's runs (fresh Envoys each)")
    ap.add_argument("--api-requests", type=int, default=4000, help="calls per API CPU run")
    ap.add_argument("--api-rate", type=int, default=500, help="calls/s of the API latency runs")
    ap.add_argument("--no-build", action="store_true", help="use the bench tools already built")
    ap.add_argument("--no-micro", action="store_true", help="skip the criterion micro-benchmarks")
    ap.add_argument("--quick", action="store_true", help="1 round, short runs: to try the harness")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.latency_rounds, args.run_seconds, args.min_requests, args.warmup = 1, 1, 0.3, 1000, 500
        args.rewarm = 500
        args.latency_seconds, args.memory_trials, args.startup_trials = 0.5, 1, 1
        args.api_rounds, args.api_requests = 1, 1000
    run(args)


if __name__ == "__main__":
    main()
