#!/usr/bin/env python3
"""`make soak`: the gate under a steady mix of WeChat traffic and attacks for a while
(10 minutes by default), through Envoy `--concurrency 2`, while WeChat's API flaps and
the backend is slow, then down, for a stretch. It asserts, then prints a summary:

- no push is lost across the backend-down stretch (parking on, the default): every
  unique verified message reached the backend at least once, on one of WeChat's tries
  or on the gate's own redelivery (marked `x-wechat-gate-redelivered: <try>`), or both;
  duplicates by MsgId are reported as a number, not failed (delivery is at least
  once). The soak acts as WeChat only: a push that gets no answer within 5 s, or a 5xx,
  is tried again 5 s after its try began, three tries in all; after `success` it is
  never sent again, so a push answered `success` for want of a backend reaches it only
  if the gate parked and redelivered it. After the load the soak waits for the parking
  area to empty (the gate's gauge `parked_now` 0 on Envoy's admin /stats, at most
  park.max_seconds) before it counts. With `--park-off` (`park.max_messages: 0`) it
  asserts instead that the lost messages are exactly the pushes whose tries ended,
  while the backend was down, in `success` (or in WeChat giving up), less those the
  backend had read at the kill or the restart: the loss parking exists to prevent;
- no unverified request completed at the backend: the backend records every request
  it read to the end, and each record must be a message sent as verified, with its
  signed query, its plaintext body (decrypted, for a safe-mode push), the gate's
  headers and, on a redelivery, a try number;
- no 5xx from the gate but the documented `503 unavailable`, and Envoy's own 5xx passed
  on to WeChat only when parking is full (`park_full`) or off;
- Envoy's RSS, sampled every 10 s, stays within 10 % of its value after the warm-up;
- no VM failure in Envoy's log (a trap, a panic, an uncaught exception, a critical line);
- the gate's counters (per account: `wechat_gate.forwarded.account=.=soak;.;`, …) add up
  to the requests sent, kind by kind (a try whose answer does not tell, such as one
  unanswered in 5 s, leaves that much slack); parking's counters are reported.

The traffic, at a steady rate (150 req/s by default) from loopback sources 127.0.0.x:
plaintext and safe-mode pushes with MsgIds of their own (and WeChat's next tries of
them), retries of answered messages (the same message, a new signed query, within
dedupe_seconds, as WeChat sends when an answer reached it late: the gate answers
`success` without forwarding), replays (a signed query used again,
with its own body or another), handshakes, forged signatures and msg_signatures, stale
timestamps, oversize and stalled bodies, and pushes from unlisted sources. The gate's
source list is only `source.wechat_api`, fetched from `wechat-gate mock-api`, whose list
changes every minute (`/__callback_ips`) while its faults flap (`/__faults`: errcodes,
dropped connections, delays past the gate's timeout). A source whose listing changes is
used again only once probes (signed handshakes) show every worker has the new list.

Safe-mode pushes are encrypted, and the gate's sealed replies opened, by wechatpy (an
independent SDK, installed into .venv by scripts/ensure-wechatpy.sh), never by the
gate's own code. Everything listens on and connects from loopback only; every process
it starts is stopped by its pid on exit, Ctrl-C or failure. Exit status 0 when every
check passed, 1 when one failed, 2 when the run could not start.

The backend is slow from 40 % of the load for 4 % of it (at least 6 s), and down
(killed, then restarted on its port) from 62 % for --down-seconds (by default 4 % of
the load, at least 20 s: longer than WeChat's 15 s of tries and Envoy's 4.5 s of
connect retries, so that only parking can carry it), so a short run has both.

  python3 bench/soak.py [--seconds 600] [--rate 150] [--down-seconds S] [--park-off] [--envoy PATH]
  python3 bench/soak.py backend --listen 127.0.0.1:PORT --records FILE   (its backend)
"""

import argparse
import collections
import datetime
import hashlib
import heapq
import http.client
import http.server
import itertools
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "soak"
GATE_WASM = ROOT / "target/wasm32-wasip1/release/wechat_gate.wasm"
CLI = ROOT / "target/release/wechat-gate"

ACCOUNT = "soak"
TOKEN = "soak-token-7c1e93"
APPID = "wx5afe0e2e000050a4"
SECRET = "soak-appsecret"
AES_KEY = "GeuKYOtmlo3LsuufAkG+oPBZOZm/L42M6eGR8KhDGgE"
TO = "gh_soak"
MAX_BODY = 8192
DEDUPE_SECONDS = 15
ROUTE_TIMEOUT = 4.5
REFRESH_SECONDS = 10
API_TIMEOUT_MS = 1000

# Sources: always on the list, never on it, and those that come and go each minute.
CORE = ["127.0.0.2", "127.0.0.3"]
NEVER = ["127.0.0.200", "127.0.0.201", "127.0.3.9"]


def epoch_list(e):
    """The callback IP list of epoch `e` (mock-api's), and the addresses it lists."""
    single = f"127.0.0.{10 + e % 5}"
    block = f"127.0.{1 + e % 2}"
    entries = CORE + [single, f"{block}.0/29"]
    members = set(CORE) | {single, f"{block}.1", f"{block}.6"}
    return entries, members


# The mix: kind -> share of the scheduled requests.
MIX = {
    "plain": 0.30,
    "safe": 0.20,
    "retry": 0.12,
    "replay": 0.08,
    "handshake": 0.04,
    "forged_signature": 0.05,
    "forged_msg_signature": 0.03,
    "stale": 0.05,
    "unlisted": 0.06,
    "oversize": 0.04,
    "stalled": 0.03,
}

# What a refusal looks like: kind -> (status, body prefix, counter).
REFUSED = {
    "forged_signature": (401, "wechat-gate: signature:", "rejected.signature"),
    "forged_msg_signature": (401, "wechat-gate: msg_signature:", "rejected.msg_signature"),
    "stale": (401, "wechat-gate: stale:", "rejected.stale"),
    "unlisted": (403, "wechat-gate: source:", "rejected.source"),
    "oversize": (413, "wechat-gate: too_large:", "rejected.too_large"),
    "stalled": (408, "wechat-gate: body_timeout:", "rejected.body_timeout"),
}
UNAVAILABLE = (503, "wechat-gate: unavailable:")
# WeChat's side of a push (FIELD-NOTES.md, "WeChat facts"): it waits 5 s for an
# answer, then drops the connection and tries again with the same message, three tries
# in all; an answer of `success` (or a reply) ends it, and nothing is ever sent again
# after that. A 5xx is taken as a failed try as well: DESIGN.md's `pass` counts on it
# ("WeChat retries"), though WeChat's documents speak only of the 5 s; the summary
# says how many messages needed a try after a 5xx. Each try starts 5 s after the one
# before it began.
WECHAT_WAIT = 5.0
WECHAT_TRIES = 3
# Parking's default park.max_seconds (DESIGN.md): a parked push is redelivered or
# dropped by then, so the wait for the parking area to empty is bounded by it.
PARK_MAX_SECONDS = 600
# The header the gate marks each of its redeliveries with (`<try>`, from 1).
REDELIVERED = "x-wechat-gate-redelivered"
# The backend-down stretch starts at this share of the load's seconds.
DOWN_AT = 0.62
# The counters that say what became of a request: each request bumps exactly one.
TERMINAL = ("handshake", "forwarded", "deduplicated", "replayed")
# The counters a try may have bumped when its answer does not say (see check_counters).
UNSURE_COUNTERS = ("forwarded", "deduplicated", "upstream_failure", "decrypted", "reply_encrypted")
# Parking's counters and gauge (DESIGN.md), reported.
PARK_STATS = ("parked", "redelivered", "park_expired", "park_full", "parked_now")


def log(msg):
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[soak {stamp}] {msg}", flush=True)


# ------------------------------------------------------------------ processes


from procs import PROCS, stop_all_on_signals  # noqa: E402


def read_banner(p, prefix, what):
    line = p.stdout.readline()
    if not line.startswith(prefix):
        raise SystemExit(f"{what} did not start: {line!r}")
    return int(line.strip().rsplit(":", 1)[1])


# ------------------------------------------------------------------ WeChat's side


def sha1_sorted(*parts):
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


NONCES = itertools.count(1)
RUN_TAG = random.randrange(100, 999)


def nonce():
    return f"{RUN_TAG}{next(NONCES):09d}"


def signed_query(token, ts, n, extra=()):
    pairs = [("signature", sha1_sorted(token, str(ts), n)), ("timestamp", str(ts)), ("nonce", n)]
    pairs.extend(extra)
    return urllib.parse.urlencode(pairs)


def text_xml(openid, content, msg_id, ts):
    return (
        f"<xml><ToUserName><![CDATA[{TO}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


class Sealer:
    """wechatpy's cipher and signature: pushes sealed and replies opened as WeChat does."""

    def __init__(self):
        from wechatpy.crypto import PrpCrypto, WeChatCrypto, _get_signature

        self._prp, self._crypto, self._sign = PrpCrypto, WeChatCrypto, _get_signature

    def encrypt(self, xml):
        crypto = self._crypto(TOKEN, AES_KEY, APPID)
        out = self._prp(crypto.key).encrypt(xml, APPID)
        return out.decode("ascii") if isinstance(out, bytes) else out

    def msg_signature(self, ts, n, encrypt):
        return self._sign(TOKEN, str(ts), n, encrypt)

    def open_reply(self, body, ts, n):
        """The plaintext of a sealed reply, which must be signed with the push's own
        timestamp and nonce; raises if wechatpy refuses it."""
        fields = {k: v for k, v in re.findall(r"<(MsgSignature|TimeStamp|Nonce)>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</\1>", body)}
        if fields.get("TimeStamp") != str(ts) or fields.get("Nonce") != n:
            raise ValueError(f"reply sealed with {fields.get('TimeStamp')}/{fields.get('Nonce')}, not the push's {ts}/{n}")
        out = self._crypto(TOKEN, AES_KEY, APPID).decrypt_message(body, fields["MsgSignature"], str(ts), n)
        return out.decode() if isinstance(out, bytes) else out


# ------------------------------------------------------------------ the backend


def backend_main(argv):
    """The backend behind the gate: records every request it read to its end (one
    JSON line, flushed, before it answers; the gate's redeliveries, marked
    `x-wechat-gate-redelivered`, included), then answers a push with a text reply
    naming its MsgId. `POST /__slow` (`{"slow": true}`) makes it slow: 0.2 to 1.5 s
    per request, and one in eight past Envoy's route timeout. Restarted, it appends to
    the same file."""
    ap = argparse.ArgumentParser(prog="soak.py backend")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--records", required=True)
    a = ap.parse_args(argv)
    out = open(Path(a.records), "a", buffering=1)
    lock = threading.Lock()
    state = {"slow": False}
    rng = random.Random()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status, body, ctype="text/plain"):
            body = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def read_body(self):
            """The whole body, or None when the request was cut short."""
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    line = self.rfile.readline(1024)
                    if not line:
                        return None
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        return body
                    chunk = self.rfile.read(size + 2)
                    if len(chunk) < size + 2:
                        return None
                    body += chunk[:size]
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            return body if len(body) == n else None

        def do_GET(self):
            self.record(b"")

        def do_POST(self):
            body = self.read_body()
            if body is None:
                self.close_connection = True
                return
            if self.path == "/__slow":
                state["slow"] = bool(json.loads(body or b"{}").get("slow"))
                return self.answer(200, json.dumps(state), "application/json")
            self.record(body)

        def record(self, body):
            text = body.decode("utf-8", "replace")
            m = re.search(r"<MsgId>(\d+)</MsgId>", text)
            msgid = m.group(1) if m else None
            rec = {
                "t": time.time(),
                "method": self.command,
                "path": self.path,
                "verified": self.headers.get("x-wechat-gate-verified"),
                "decrypted": self.headers.get("x-wechat-gate-decrypted"),
                "openid": self.headers.get("x-wechat-gate-openid"),
                "redelivered": self.headers.get(REDELIVERED),
                "body": text,
                "msgid": msgid,
            }
            with lock:
                out.write(json.dumps(rec) + "\n")
            if state["slow"]:
                time.sleep(ROUTE_TIMEOUT + 1.5 if rng.random() < 0.125 else rng.uniform(0.2, 1.5))
            f = re.search(r"<FromUserName><!\[CDATA\[(.*?)\]\]>", text)
            reply = (
                f"<xml><ToUserName><![CDATA[{f.group(1) if f else 'unknown'}]]></ToUserName>"
                f"<FromUserName><![CDATA[{TO}]]></FromUserName><CreateTime>{int(time.time())}</CreateTime>"
                f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ack {msgid}]]></Content></xml>"
            )
            try:
                self.answer(200, reply, "text/xml")
            except OSError:
                self.close_connection = True  # Envoy gave up on it (route timeout)

    server = http.server.ThreadingHTTPServer(tuple_addr(a.listen), Handler)
    server.daemon_threads = True
    print(f"backend: listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def tuple_addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


class Backend:
    def __init__(self, records):
        self.records = records
        self.port = 0
        self.proc = None
        self.start()

    def start(self):
        args = [sys.executable, str(Path(__file__).resolve()), "backend", "--listen", f"127.0.0.1:{self.port}",
                "--records", str(self.records)]
        self.proc = PROCS.spawn(args, stdout=subprocess.PIPE, stderr=open(OUT / "backend.log", "a"), text=True)
        self.port = read_banner(self.proc, "backend: listening on http://127.0.0.1:", "the backend")

    def kill(self):
        """Down: killed, every connection with it (Envoy then gets refused)."""
        PROCS.stop(self.proc, kill=True)

    def control(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return json.loads(r.read())
        finally:
            conn.close()

    def slow(self, on):
        self.control("POST", "/__slow", json.dumps({"slow": on}))


# ------------------------------------------------------------------ mock-api, Envoy


class MockApi:
    def __init__(self, entries):
        args = [str(CLI), "mock-api", "--listen", "127.0.0.1:0", "--appid", APPID]
        for e in entries:
            args += ["--callback-ip", e]
        self.proc = PROCS.spawn(args, stdout=subprocess.PIPE, stderr=open(OUT / "mock-api.log", "w"),
                                text=True, env=dict(os.environ, WECHAT_APPSECRET=SECRET))
        self.port = read_banner(self.proc, "mock-api: listening on http://127.0.0.1:", "mock-api")

    def post(self, path, value):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", path, body=json.dumps(value), headers={"content-type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"mock-api {path}: {r.status} {body!r}")
            return json.loads(body)
        finally:
            conn.close()

    def calls(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/__calls")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()


def gate_config(park_off):
    """The gate's configuration: parking sized for the soak's rate, or off."""
    config = {
        "name": ACCOUNT,
        "path": "/wechat",
        "appid": APPID,
        "token": {"env": "WECHAT_TOKEN"},
        "timestamp_tolerance_seconds": 300,
        "max_body_bytes": MAX_BODY,
        "dedupe_seconds": DEDUPE_SECONDS,
        "on_upstream_failure": "success",
        "safe_mode": {"encoding_aes_key": {"env": "WECHAT_AES_KEY"}, "require": False, "decrypt": True},
        "source": {
            "mode": "enforce",
            "allow": [],
            "when_unavailable": "deny",
            "wechat_api": {
                "secret": {"env": "WECHAT_APPSECRET"},
                "token_api": "stable",
                "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}],
                "refresh_seconds": REFRESH_SECONDS,
                "timeout_ms": API_TIMEOUT_MS,
            },
        },
    }
    if park_off:
        config["park"] = {"max_messages": 0}
    else:
        # Sized as docs/operating.md says: the push rate times the longest outage to
        # carry (150/s for the default 24 s down stretch is some 3,600 pushes).
        config["park"] = {"max_messages": 10000}
    return config


def cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        # As the shipped envoy.yaml: the route's retries during a restart all at once.
        "circuit_breakers": {"thresholds": [{"max_retries": 1000}]},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def envoy_config(backend_port, api_port, park_off):
    """Like the shipped envoy/envoy.yaml: the gate on /wechat (hold mode,
    FAIL_RELOAD), its secrets from the environment, a 4.5 s route timeout, the
    shipped retry_policy (a refused backend connection tried again within the route's
    timeout), the shipped stats_tags; everything on 127.0.0.1, ports chosen by the
    kernel."""
    wasm = {
        "name": "wechat_gate",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "wechat_gate",
                "root_id": "wechat_gate",
                "allow_on_headers_stop_iteration": True,
                "failure_policy": "FAIL_RELOAD",
                "vm_config": {
                    "vm_id": "wechat_gate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(GATE_WASM)}},
                    "environment_variables": {"host_env_keys": ["WECHAT_TOKEN", "WECHAT_APPSECRET", "WECHAT_AES_KEY"]},
                },
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(gate_config(park_off))},
            },
        },
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "soak",
        "use_remote_address": True,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "retry_policy": {
            "retry_on": "connect-failure,refused-stream,reset-before-request", "num_retries": 10,
            "retry_back_off": {"base_interval": "0.2s", "max_interval": "1s"}}, "routes": [
            {"match": {"path": "/wechat"}, "route": {"cluster": "backend", "timeout": f"{ROUTE_TIMEOUT}s"}},
            {"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}}},
        ]}]},
        "http_filters": [wasm, {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "stats_config": {"stats_tags": [
            {"tag_name": "account", "regex": "(account=\\.=(.*?);\\.;)"},
            {"tag_name": "reason", "regex": "(reason=\\.=(.*?);\\.;)"},
        ]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "main", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [cluster("backend", backend_port), cluster("wechat_api", api_port)],
        },
    }


class Envoy:
    def __init__(self, envoy_bin, config):
        cfg = OUT / "envoy.yaml"
        cfg.write_text(json.dumps(config, indent=1))
        admin_file = OUT / "admin.txt"
        admin_file.unlink(missing_ok=True)
        self.log = OUT / "envoy.log"
        env = dict(os.environ, WECHAT_TOKEN=TOKEN, WECHAT_APPSECRET=SECRET, WECHAT_AES_KEY=AES_KEY)
        self.proc = PROCS.spawn(
            [envoy_bin, "-c", str(cfg), "--use-dynamic-base-id", "--concurrency", "2",
             "--admin-address-path", str(admin_file), "--log-level", "info", "--component-log-level", "wasm:info"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env, cwd=OUT,
        )
        self.pid = self.proc.pid
        self.admin = self.port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.admin is None and admin_file.exists() and admin_file.read_text().strip():
                self.admin = admin_file.read_text().strip()
            if self.admin:
                try:
                    if self.get("/ready")[0] == 200:
                        listeners = json.loads(self.get("/listeners?format=json")[1])
                        self.port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                        if self.port:
                            return
                except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException):
                    pass
            time.sleep(0.05)
        raise SystemExit(f"Envoy did not start (see {self.log})")

    def get(self, path):
        host, port = self.admin.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def counters(self):
        """The gate's stats for its account, by short name (`forwarded`,
        `rejected.signature`, `allowlist.entries`), read from the tagged names."""
        out = {}
        for line in self.get("/stats?filter=wasmcustom")[1].decode().splitlines():
            name, _, value = line.rpartition(": ")
            m = re.fullmatch(r"wasmcustom\.wechat_gate\.(.+?)\.account=\.=([^;]*);\.;(?:reason=\.=([^;]*);\.;)?", name)
            if not m or m.group(2) != ACCOUNT:
                continue
            short = f"rejected.{m.group(3)}" if m.group(1) == "rejected_total" else m.group(1)
            try:
                out[short] = int(value)
            except ValueError:
                pass
        return out

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def vm_failures(self):
        """Lines that say a Wasm VM failed: a trap, a panic, an uncaught exception, a
        critical line, an error of Envoy's Wasm runtime (the gate's own log lines,
        `wasm log …`, are what it says about requests: counted apart)."""
        bad = re.compile(r"wasm_vm\.cc|Uncaught|panicked at|Function: proxy_|\]\[critical\]|\btrap\b", re.I)
        return [l for l in self.log_lines()
                if bad.search(l) or ("][error][wasm]" in l and "wasm log " not in l)]

    def gate_log_levels(self):
        """How many lines the gate itself logged, by level."""
        levels = collections.Counter()
        for l in self.log_lines():
            m = re.search(r"\]\[(\w+)\]\[wasm\].* wasm log ", l)
            if m:
                levels[m.group(1)] += 1
        return dict(levels)

    def log_lines(self):
        return self.log.read_text(errors="replace").splitlines()


# ------------------------------------------------------------------ the soak


class Msg:
    """A verified message: what was sent, and what WeChat made of the answers."""

    def __init__(self, msg_id, safe, xml, openid):
        self.id, self.safe, self.xml, self.openid = msg_id, safe, xml, openid
        self.queries = set()  # (signature, timestamp, nonce) of each verified try
        self.tries = 0  # WeChat's tries so far (at most WECHAT_TRIES)
        self.after_5xx = False  # a try was made because the one before got a 5xx
        # How WeChat's tries ended: "reply" (the backend's), "success" (WeChat will
        # not send it again), "gave_up" (three tries without either), "failed" (an
        # answer the soak did not expect: a failure of its own).
        self.final = None
        self.ended_at = None  # when that answer came (time.monotonic())
        self.first_sent = time.monotonic()


class Soak:
    def __init__(self, args, envoy, backend, api):
        self.args, self.envoy, self.backend, self.api = args, envoy, backend, api
        self.sealer = Sealer()
        self.lock = threading.Lock()
        self.msgs = {}  # msg id (str) -> Msg, every verified message
        self.msg_ids = itertools.count(int(time.time()) * 1000)
        self.attack_ids = itertools.count(9_000_000_000_000_000_000)
        self.sent = collections.Counter()  # kind -> requests sent
        self.outcomes = collections.Counter()  # (kind, outcome) -> n
        self.expected = collections.Counter()  # counter -> what the gate should have counted
        self.failures = []
        self.errors = collections.Counter()
        self.retry_pool = collections.deque()  # Msg delivered with a reply
        self.replay_pool = collections.deque()  # (query, body, timestamp) of a try that reached the backend
        self.next_tries = []  # heap of (when, n, Msg): WeChat's next try of a push
        self.next_n = itertools.count()
        self.unsure = 0  # tries whose counters the soak cannot know (no answer, a 5xx, ...)
        self.no_answer = 0  # tries of a push with no answer within WeChat's 5 s
        self.slowest = 0.0  # the longest wait for an answer to a push, seconds
        self.down_at = self.up_at = None  # the backend-down stretch (time.monotonic())
        self.parking = {}  # what wait_parked() saw
        self.listed = set()
        self.unlisted = set(NEVER)
        self.probing = {}  # source -> [expect listed?, first match at]
        self.src_inflight = collections.Counter()
        self.rss = []  # (seconds since start, KiB)
        self.events = []  # (seconds since start, what)
        self.stop = threading.Event()
        self.load_over = threading.Event()
        self.start = time.monotonic()
        self.inflight = threading.BoundedSemaphore(args.max_inflight)
        self.pool = ThreadPoolExecutor(max_workers=args.max_inflight + 8)
        self.saturated = 0
        self.busy = 0  # requests submitted and not yet finished

    # -------------------------------------------------------------- bookkeeping

    def t(self):
        return time.monotonic() - self.start

    def event(self, what):
        self.events.append((round(self.t(), 1), what))
        log(what)

    def fail(self, what):
        with self.lock:
            if len(self.failures) < 200:
                self.failures.append(f"t={self.t():.0f}s {what}")
        log(f"FAIL {what}")

    def count(self, kind, outcome, *counters):
        with self.lock:
            self.outcomes[(kind, outcome)] += 1
            for c in counters:
                self.expected[c] += 1

    def note_sent(self, kind):
        with self.lock:
            self.sent[kind] += 1
            if len(self.failures) >= 200:
                self.stop.set()  # enough to go on: stop early

    def take_source(self, listed):
        with self.lock:
            pool = self.listed if listed else self.unlisted
            if not pool:
                return None
            src = random.choice(sorted(pool))
            self.src_inflight[src] += 1
            return src

    def put_source(self, src):
        with self.lock:
            self.src_inflight[src] -= 1

    # -------------------------------------------------------------- HTTP

    def send(self, src, method, target, body=b"", headers=None, timeout=15, wechat=False):
        """(status, body text) or None when no complete answer came. `wechat`: a push's
        try, waited on as WeChat does (WECHAT_WAIT); a missing answer is then one of the
        things WeChat's tries are for, tallied apart from the soak's own errors."""
        hdrs = {"content-type": "text/xml"} if method == "POST" else {}
        hdrs.update(headers or {})
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.envoy.port, timeout=WECHAT_WAIT if wechat else timeout,
                                          source_address=(src, 0))
        try:
            conn.request(method, target, body=body if method == "POST" else None, headers=hdrs)
            r = conn.getresponse()
            out = r.status, r.read().decode("utf-8", "replace")
            if wechat and time.monotonic() - t0 > WECHAT_WAIT:
                out = None  # complete, but too late: WeChat had dropped the connection
        except (OSError, http.client.HTTPException) as e:
            if not wechat:
                self.errors[type(e).__name__] += 1
            out = None
        finally:
            conn.close()
        if wechat:
            with self.lock:
                self.slowest = max(self.slowest, time.monotonic() - t0)
                self.no_answer += out is None
        return out

    def send_raw(self, src, head, body_part, timeout=15):
        """Writes `head` and `body_part` (a body cut short, or none) and reads the answer."""
        try:
            s = socket.create_connection(("127.0.0.1", self.envoy.port), timeout=timeout, source_address=(src, 0))
        except OSError as e:
            self.errors[type(e).__name__] += 1
            return None
        try:
            s.sendall(head + body_part)
            r = http.client.HTTPResponse(s)
            r.begin()
            return r.status, r.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            self.errors[type(e).__name__] += 1
            return None
        finally:
            s.close()

    # -------------------------------------------------------------- requests

    def new_msg(self, safe):
        msg_id = str(next(self.msg_ids))
        openid = f"o_soak_user_{int(msg_id) % 97:04d}"
        m = Msg(msg_id, safe, text_xml(openid, f"soak message {msg_id}", msg_id, int(time.time())), openid)
        with self.lock:
            self.msgs[msg_id] = m
        return m

    def push_of(self, m, ts=None, token=TOKEN, tamper=False):
        """(query, body, nonce, timestamp) of a push of `m` as WeChat sends it."""
        ts = ts or int(time.time())
        n = nonce()
        if not m.safe:
            return signed_query(token, ts, n, [("openid", m.openid)]), m.xml, n, ts
        encrypt = self.sealer.encrypt(m.xml)
        signed_over = self.sealer.encrypt(m.xml) if tamper else encrypt
        q = signed_query(token, ts, n, [("openid", m.openid), ("encrypt_type", "aes"),
                                        ("msg_signature", self.sealer.msg_signature(ts, n, signed_over))])
        body = f"<xml><ToUserName><![CDATA[{TO}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        return q, body, n, ts

    def verified_push(self, kind, m):
        """A verified try of message `m`, sent from a listed source and answered within
        WeChat's 5 s (or not), its answer checked. `kind`: "plain" or "safe" (WeChat's
        first try), "next_try" (its second or third, after no answer or a 5xx), "retry"
        (a try of a message the backend answered, as WeChat makes when that answer did
        not reach it in time: the gate must answer `success` without forwarding).
        Returns (outcome, query, body, timestamp, sent at); the outcome is "reply",
        "success", "again" (no answer in 5 s), "5xx" (WeChat tries again after either)
        or None (an answer the soak did not expect, recorded as a failure)."""
        src = self.take_source(True)
        if src is None:
            return "again", None, None, None, time.monotonic()  # no source to send from: as if unanswered
        sent = time.monotonic()
        try:
            q, body, n, ts = self.push_of(m)
            sig = urllib.parse.parse_qs(q)["signature"][0]
            with self.lock:
                m.queries.add((sig, str(ts), n))
            self.note_sent(kind)
            res = self.send(src, "POST", f"/wechat?{q}", body.encode(), wechat=True)
        finally:
            self.put_source(src)
        extra = ("decrypted",) if m.safe else ()
        if res is None:
            # What the gate made of it is unknown (forwarded, failed, deduplicated...).
            self.count(kind, f"no answer in {WECHAT_WAIT:g} s")
            self.unsure_try()
            return "again", q, body, ts, sent
        status, text = res
        if status == 200 and text == "success":
            if kind == "retry":
                self.count(kind, "deduplicated", "deduplicated")
            elif kind == "next_try":
                # Deduplicated (an earlier try was forwarded) or failed by Envoy: unknown.
                self.count(kind, "success")
                self.unsure_try()
            else:
                self.count(kind, "success (Envoy failed it)", "forwarded", "upstream_failure", *extra)
            return "success", q, body, ts, sent
        if status == UNAVAILABLE[0] and text.startswith(UNAVAILABLE[1]):
            self.count(kind, "503 unavailable", "rejected.unavailable")
            return "5xx", q, body, ts, sent
        if status in (502, 503, 504) and not text.startswith("wechat-gate:"):
            # Envoy's own 5xx, passed on by the gate (parking full or off, see check()).
            self.count(kind, f"{status} Envoy's, passed")
            self.unsure_try()
            return "5xx", q, body, ts, sent
        if status == 200 and text.startswith("<xml"):
            try:
                plain = self.sealer.open_reply(text, ts, n) if m.safe else text
            except Exception as e:  # noqa: BLE001 - wechatpy's refusal is a finding
                self.fail(f"{kind} {m.id}: the sealed reply does not open: {e}")
                plain = ""
            if f"ack {m.id}" not in plain:
                self.fail(f"{kind} {m.id}: the reply is not this message's: {plain[:200]!r}")
            if kind == "retry":
                self.fail(f"retry of {m.id} reached the backend again")
            self.count(kind, "backend reply", "forwarded", *extra, *(("reply_encrypted",) if m.safe else ()))
            return "reply", q, body, ts, sent
        self.fail(f"{kind} {m.id}: {status} {text[:200]!r}")
        self.count(kind, f"{status}?")
        return None, q, body, ts, sent

    def unsure_try(self):
        with self.lock:
            self.unsure += 1

    def wechat_try(self, kind, m):
        """One of WeChat's tries of `m`, and what WeChat does next: nothing after a
        reply or `success`; after no answer in 5 s or a 5xx, another try 5 s after this
        one began, three in all."""
        got, q, body, ts, sent = self.verified_push(kind, m)
        now = time.monotonic()
        with self.lock:
            m.tries += 1
            if got == "reply":
                m.final, m.ended_at = "reply", now
                self.retry_pool.append(m)
                self.replay_pool.append((q, body, ts))  # its query is used now
            elif got == "success":
                m.final, m.ended_at = "success", now
            elif got in ("again", "5xx") and m.tries < WECHAT_TRIES:
                m.after_5xx = m.after_5xx or got == "5xx"
                heapq.heappush(self.next_tries, (sent + WECHAT_WAIT, next(self.next_n), m))
            elif got in ("again", "5xx"):
                m.final, m.ended_at = "gave_up", now
            else:
                m.final, m.ended_at = "failed", now

    def first_try(self, safe):
        m = self.new_msg(safe)
        self.wechat_try("safe" if safe else "plain", m)
        return m

    def retry(self):
        """A try of a message the backend answered, with a new signed query, within
        dedupe_seconds of the first: WeChat makes one when the answer did not reach
        it within 5 s. The gate must answer it `success` without forwarding."""
        now = time.monotonic()
        with self.lock:
            # Within dedupe_seconds of the first try's forward (4 s to spare).
            while self.retry_pool and now - self.retry_pool[0].first_sent > DEDUPE_SECONDS - 4:
                self.retry_pool.popleft()
            item = self.retry_pool.popleft() if self.retry_pool else None
            if item and random.random() < 0.3:
                self.retry_pool.append(item)  # some messages are retried twice
        if item is None:
            return self.first_try(random.random() < 0.4)
        self.verified_push("retry", item)


    def replay(self):
        """A signed query used again (its first use reached the backend), with its own
        body or an attacker's: answered `success`, never forwarded."""
        now = time.time()
        with self.lock:
            while self.replay_pool and now - self.replay_pool[0][2] > 200:
                self.replay_pool.popleft()
            item = random.choice(self.replay_pool) if self.replay_pool else None
        if item is None:
            return self.first_try(False)
        q, body, _ = item
        if random.random() < 0.5:
            body = text_xml("o_attacker", "replayed query, new body", next(self.attack_ids), int(now))
        src = self.take_source(True)
        if src is None:
            return
        try:
            self.note_sent("replay")
            res = self.send(src, "POST", f"/wechat?{q}", body.encode())
        finally:
            self.put_source(src)
        if res == (200, "success"):
            self.count("replay", "replayed", "replayed")
        elif res is None:
            self.fail("replay: no answer")
        else:
            self.fail(f"replay: {res[0]} {res[1][:200]!r}")
            self.count("replay", f"{res[0]}?")

    def handshake(self, src, kind="handshake"):
        echostr = str(random.getrandbits(60))
        q = signed_query(TOKEN, int(time.time()), nonce(), [("echostr", echostr)])
        self.note_sent(kind)
        res = self.send(src, "GET", f"/wechat?{q}")
        if res is None:
            self.fail(f"{kind} from {src}: no answer")
            return None
        if res == (200, echostr):
            self.count(kind, "200 echostr", "handshake")
            return True
        if res[0] == 403 and res[1].startswith("wechat-gate: source:"):
            self.count(kind, "403 source", "rejected.source")
            return False
        if res[0] == UNAVAILABLE[0] and res[1].startswith(UNAVAILABLE[1]):
            self.count(kind, "503 unavailable", "rejected.unavailable")
            return False
        self.fail(f"{kind} from {src}: {res[0]} {res[1][:200]!r}")
        self.count(kind, f"{res[0]}?")
        return None

    def refused(self, kind):
        """A request the gate must refuse; its message (if any) is an attacker's and
        must never reach the backend."""
        status, prefix, counter = REFUSED[kind]
        src = self.take_source(kind != "unlisted")
        if src is None:
            return
        try:
            now = int(time.time())
            attack = text_xml("o_attacker", f"{kind}", next(self.attack_ids), now)
            self.note_sent(kind)
            if kind == "forged_signature":
                q = signed_query("not-" + TOKEN, now, nonce(), [("openid", "o_attacker")])
                res = self.send(src, "POST", f"/wechat?{q}", attack.encode())
            elif kind == "stale":
                q = signed_query(TOKEN, now - 400, nonce(), [("openid", "o_attacker")])
                res = self.send(src, "POST", f"/wechat?{q}", attack.encode())
            elif kind == "unlisted":
                safe = random.random() < 0.3
                m = Msg(str(next(self.attack_ids)), safe, attack, "o_attacker")
                q, body, _, _ = self.push_of(m)
                res = self.send(src, "POST", f"/wechat?{q}", body.encode())
            elif kind == "forged_msg_signature":
                m = Msg(str(next(self.attack_ids)), True, attack, "o_attacker")
                q, body, _, _ = self.push_of(m, tamper=True)
                res = self.send(src, "POST", f"/wechat?{q}", body.encode())
            elif kind == "oversize":
                q = signed_query(TOKEN, now, nonce(), [("openid", "o_attacker")])
                head = (f"POST /wechat?{q} HTTP/1.1\r\nhost: soak\r\ncontent-type: text/xml\r\n"
                        f"content-length: {MAX_BODY + 1 + random.randrange(100_000)}\r\n\r\n").encode()
                res = self.send_raw(src, head, b"")
            else:  # stalled: a third of the body, then nothing
                q = signed_query(TOKEN, now, nonce(), [("openid", "o_attacker")])
                body = attack.encode()
                head = (f"POST /wechat?{q} HTTP/1.1\r\nhost: soak\r\ncontent-type: text/xml\r\n"
                        f"content-length: {len(body)}\r\n\r\n").encode()
                res = self.send_raw(src, head, body[: len(body) // 3])
        finally:
            self.put_source(src)
        if res is None:
            self.fail(f"{kind} from {src}: no answer")
        elif res[0] == status and res[1].startswith(prefix):
            self.count(kind, f"{status}", counter)
        elif res[0] == UNAVAILABLE[0] and res[1].startswith(UNAVAILABLE[1]):
            self.count(kind, "503 unavailable", "rejected.unavailable")
        else:
            self.fail(f"{kind} from {src}: {res[0]} {res[1][:200]!r}, not {status} {prefix}")
            self.count(kind, f"{res[0]}?")

    def one(self, kind):
        try:
            if kind in ("plain", "safe"):
                self.first_try(kind == "safe")
            elif kind == "retry":
                self.retry()
            elif kind == "replay":
                self.replay()
            elif kind == "handshake":
                src = self.take_source(True)
                if src:
                    try:
                        if self.handshake(src) is False:
                            self.fail(f"handshake from listed {src} refused")
                    finally:
                        self.put_source(src)
            elif kind == "next_try":
                raise AssertionError("WeChat's next tries are submitted with their message")
            else:
                self.refused(kind)
        except Exception:  # noqa: BLE001 - a bug of the soak itself is a failure too
            self.fail(f"{kind}: {traceback.format_exc()}")
        finally:
            self.done()

    def submit(self, fn, *args, counted=False):
        """Runs fn(*args) on the pool once a place in flight is free; `counted`: the
        caller has already counted it busy (under the lock that took it off a queue,
        so the drain never sees it nowhere)."""
        if not counted:
            with self.lock:
                self.busy += 1
        if not self.inflight.acquire(timeout=10):
            with self.lock:
                self.saturated += 1
                self.busy -= 1
            return False
        self.pool.submit(fn, *args)
        return True

    def done(self):
        with self.lock:
            self.busy -= 1
        self.inflight.release()

    # -------------------------------------------------------------- threads

    def scheduler(self):
        kinds, weights = zip(*MIX.items())
        interval = 1.0 / self.args.rate
        next_at = time.monotonic()
        end = self.start + self.args.seconds
        while not self.stop.is_set() and time.monotonic() < end:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1:
                next_at = time.monotonic()  # behind by a second: do not burst to catch up
            self.submit(self.one, random.choices(kinds, weights)[0])
        self.load_over.set()

    def wechat_tries(self):
        """WeChat's second and third tries, each when it is due (5 s after the try
        before it began). The soak never sends a push again after `success`: that is
        WeChat's rule, and the gate's parking must carry such a push."""
        while not self.stop.is_set():
            with self.lock:
                due = self.next_tries and self.next_tries[0][0] <= time.monotonic()
                item = heapq.heappop(self.next_tries) if due else None
                if item:
                    self.busy += 1
            if item is None:
                time.sleep(0.05)
                continue
            m = item[2]
            if not self.submit(self.next_try, m, counted=True):
                with self.lock:
                    heapq.heappush(self.next_tries, (time.monotonic() + 1, next(self.next_n), m))

    def next_try(self, m):
        try:
            self.wechat_try("next_try", m)
        except Exception:  # noqa: BLE001
            self.fail(f"next_try: {traceback.format_exc()}")
        finally:
            self.done()


    def prober(self):
        """Sources whose listing changed: probed with signed handshakes every 0.25 s
        until every answer for 1.5 s (longer than a worker's 1 s tick, on which it
        picks up the shared list) says the new listing; then used as such again."""
        while not self.stop.is_set():
            with self.lock:
                todo = list(self.probing.items())
            for src, state in todo:
                got = self.handshake(src, "probe")
                now = time.monotonic()
                with self.lock:
                    if src not in self.probing or self.probing[src] is not state:
                        continue
                    if got is state[0]:
                        state[1] = state[1] or now
                        if now - state[1] >= 1.5:
                            del self.probing[src]
                            (self.listed if state[0] else self.unlisted).add(src)
                            self.event(f"source {src} now {'listed' if state[0] else 'unlisted'} "
                                       f"on every worker")
                    else:
                        state[1] = None
            time.sleep(0.25)

    def relist(self, entries, members, previous):
        """Changes mock-api's list; sources whose listing changes are probed first."""
        changed = members ^ previous
        with self.lock:
            self.listed -= changed
            self.unlisted -= changed
        # Nothing of theirs in flight when the gate might see the new list.
        while any(self.src_inflight[s] for s in changed):
            time.sleep(0.01)
        self.api.post("/__callback_ips", entries)
        with self.lock:
            for s in changed:
                self.probing[s] = [s in members, None]
        self.event(f"callback IP list now {entries}")

    def flapper(self):
        """WeChat's API: a new list every minute, each with a fault while it lands;
        the backend slow for a stretch (from 40 % of the load), then down for
        --down-seconds (from 62 %)."""
        d = self.args.seconds
        stretch = max(6.0, 0.04 * d)
        plan = [(0.40 * d, "slow"), (0.40 * d + stretch, "fast"),
                (DOWN_AT * d, "down"), (DOWN_AT * d + self.args.down_seconds, "up")]
        faults = [
            ({"errcodes": {"getcallbackip": -1}}, 15),
            ({"drop": 3}, 15),
            ({"delay_ms": API_TIMEOUT_MS + 500}, 12),
            ({"fail": 3, "errcode": 40001}, 15),
        ]
        epoch = 0
        for k in itertools.count():
            at = 20 + 60 * k
            if at > d - 15:
                break
            plan.append((at, ("list", k)))
            plan.append((at + faults[k % len(faults)][1], ("clear", k)))
        plan.sort(key=lambda p: p[0])
        members = epoch_list(0)[1]
        for at, what in plan:
            while not self.stop.is_set() and self.t() < at:
                time.sleep(min(0.2, max(0.0, at - self.t())))
            if self.stop.is_set():
                return
            if what == "slow":
                self.backend.slow(True)
                self.event("backend slow (0.2 to 1.5 s, one request in eight past the route timeout)")
            elif what == "fast":
                self.backend.slow(False)
                self.event("backend fast again")
            elif what == "down":
                self.down_at = time.monotonic()
                self.backend.kill()
                self.event(f"backend down (killed) for {self.args.down_seconds:.0f} s")
            elif what == "up":
                self.backend.start()
                self.up_at = time.monotonic()
                self.event("backend up again")
            elif what[0] == "list":
                fault, _ = faults[what[1] % len(faults)]
                self.api.post("/__faults", fault)
                self.event(f"mock-api faults {fault}")
                epoch += 1
                entries, new = epoch_list(epoch)
                self.relist(entries, new, members)
                members = new
            elif what[0] == "clear":
                self.api.post("/__faults", {})
                self.event("mock-api faults cleared")

    def sampler(self):
        while not self.stop.is_set():
            try:
                self.rss.append((round(self.t()), self.envoy.rss_kib()))
            except OSError:
                self.fail("Envoy is gone")
                self.stop.set()
                return
            if self.envoy.proc.poll() is not None:
                self.fail(f"Envoy exited with {self.envoy.proc.returncode}")
                self.stop.set()
                return
            self.stop.wait(10)

    # -------------------------------------------------------------- the run

    def run(self):
        # The list loads: every source of the first list answers as listed.
        with self.lock:
            for s in epoch_list(0)[1]:
                self.probing[s] = [True, None]
        threads = [threading.Thread(target=f, daemon=True) for f in (self.prober, self.sampler)]
        for th in threads:
            th.start()
        t0 = time.monotonic()
        while not all(s in self.listed for s in CORE):
            if time.monotonic() - t0 > 60:
                raise SystemExit("the callback IP list did not load in 60 s")
            time.sleep(0.05)
        self.event(f"callback IP list loaded on every worker after {time.monotonic() - t0:.1f} s")
        self.start = time.monotonic()
        self.rss.clear()
        for f in (self.scheduler, self.wechat_tries, self.flapper):
            th = threading.Thread(target=f, daemon=True)
            th.start()
            threads.append(th)
        self.load_over.wait()
        self.event(f"load over after {self.t():.0f} s; draining")
        deadline = time.monotonic() + 120
        # Drained: nothing in flight, none of WeChat's tries still to come.
        while time.monotonic() < deadline and not self.stop.is_set():
            with self.lock:
                if not self.busy and not self.next_tries and not self.probing:
                    break
            time.sleep(0.2)
        else:
            if not self.stop.is_set():
                self.fail(f"not drained in 120 s: {self.busy} requests in flight, "
                          f"{len(self.next_tries)} of WeChat's tries to come, {len(self.probing)} sources probing")
        stopped_early = self.stop.is_set()
        self.stop.set()
        self.pool.shutdown(wait=True)
        try:
            self.rss.append((round(self.t()), self.envoy.rss_kib()))
        except OSError:
            pass
        if not stopped_early:
            self.wait_parked()

    def wait_parked(self):
        """Parking drains: waits for the gate's gauge parked_now (Envoy's admin /stats)
        to read 0, at most park.max_seconds (and 30 s for the last try's answer),
        since by then every parked push has been redelivered or dropped. With parking
        off it is only read."""
        t0 = time.monotonic()
        bound = 0 if self.args.park_off else PARK_MAX_SECONDS + 30
        first = None
        while True:
            now = self.envoy.counters().get("parked_now")
            first = now if first is None else first
            waited = time.monotonic() - t0
            if not now or waited > bound:
                break
            time.sleep(0.5)
        self.parking = {"parked_now_at_end_of_load": first, "parked_now": now, "waited_s": round(waited, 1)}
        if now is None:
            self.event("parking: the gate has no gauge parked_now; not waited on")
        elif now and self.args.park_off:
            self.fail(f"parked_now {now} with parking off")
        elif now:
            self.fail(f"parking did not drain: parked_now {now} after {waited:.0f} s (park.max_seconds "
                      f"{PARK_MAX_SECONDS})")
        elif first:
            self.event(f"parking drained: parked_now {first} at the end of the load, 0 after {waited:.1f} s")
        else:
            self.event("parking: parked_now 0 at the end of the load")

    def check(self, records_file):
        """Every assertion; the failures are collected in self.failures."""
        report = {}
        got = self.check_counters(report)
        arrivals = self.check_records(records_file, report)
        self.check_loss(arrivals, got, report)
        # -- 5xx, RSS, the log
        passed = {f"{k[0]} {k[1]}": v for k, v in self.outcomes.items() if k[1].endswith("Envoy's, passed")}
        report["envoy_5xx_passed"] = passed
        if passed and not self.args.park_off and not got.get("park_full", 0):
            self.fail(f"Envoy's 5xx passed on to WeChat with parking on and never full (park_full 0): {passed}")
        fivexx = {k: v for k, v in self.outcomes.items()
                  if k[1].startswith("5") and k[1] != "503 unavailable" and not k[1].endswith("Envoy's, passed")}
        if fivexx:
            self.fail(f"5xx from the gate: {fivexx}")
        warm = min(60, self.args.seconds / 4)
        after = [kib for t, kib in self.rss if t >= warm]
        report["rss_kib"] = {"samples": self.rss, "warm_up_s": warm}
        if after:
            base = after[0]
            lo, hi = min(after), max(after)
            report["rss_kib"].update(base=base, min=lo, max=hi, max_change_pct=round(100 * max(hi - base, base - lo) / base, 1))
            if hi > base * 1.10 or lo < base * 0.90:
                self.fail(f"Envoy RSS moved more than 10 % after the warm-up: {base} KiB, then {lo}..{hi} KiB")
        else:
            self.fail("no RSS sample after the warm-up")
        vm = self.envoy.vm_failures()
        report["vm_failure_lines"] = vm[:20]
        report["gate_log_lines"] = self.envoy.gate_log_levels()
        if vm:
            self.fail(f"{len(vm)} VM failure lines in Envoy's log, first: {vm[0][:200]}")
        if self.errors:
            self.fail(f"requests without a complete answer: {dict(self.errors)}")
        return report

    def check_counters(self, report):
        """The gate's counters add up to the answers, kind by kind. A try whose answer
        does not say what the gate counted (none in WeChat's 5 s, Envoy's 5xx passed
        on, `success` to a second try) leaves that much slack on the counters it may
        have bumped. Returns the counters as read."""
        total = sum(self.sent.values())
        t0 = time.monotonic()
        while True:  # settled on what was sent
            got = self.envoy.counters()
            counted = sum(got.get(c, 0) for c in TERMINAL) + sum(v for k, v in got.items() if k.startswith("rejected."))
            if counted == total or time.monotonic() - t0 > 30:
                break
            time.sleep(0.2)
        report["counters_settled_s"] = round(time.monotonic() - t0, 1)
        if counted != total:
            self.fail(f"the gate counted {counted} requests, {total} were sent")
        names = sorted(set(self.expected) | {k for k in got if k in TERMINAL or k.startswith("rejected.")}
                       | {"decrypted", "reply_encrypted", "upstream_failure"})
        report["counters"] = {n: (self.expected.get(n, 0), got.get(n, 0)) for n in names}
        report["unsure_tries"] = self.unsure
        for n, (want, have) in report["counters"].items():
            slack = self.unsure if n in UNSURE_COUNTERS else 0
            if not want <= have <= want + slack:
                self.fail(f"counter {n}: {have}, expected {want}" + (f" to {want + slack}" if slack else ""))
        for n in ("replay_table.evicted", "replay_table.unrecorded", "source_unverified", "source_report_only",
                  "passed_through"):
            if got.get(n, 0):
                self.fail(f"counter {n}: {got[n]}, expected 0")
        report["live_list"] = {k: got.get(k, 0) for k in ("allowlist.refresh_ok", "allowlist.refresh_failed",
                                                           "allowlist.entries")}
        report["parking"] = {**{k: got.get(k) for k in PARK_STATS}, **self.parking}
        return got

    def check_records(self, records_file, report):
        """No request but a verified message's completed at the backend, each with a
        query sent for it, its plaintext body and the gate's headers (a redelivery also
        with its mark). Returns MsgId -> Counter of arrivals: "wechat" (on one of
        WeChat's tries) and "redelivered" (the gate's, marked)."""
        arrivals = collections.defaultdict(collections.Counter)
        bad_lines = 0
        for line in records_file.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                bad_lines += 1
                continue
            m = self.msgs.get(rec.get("msgid") or "")
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(rec["path"]).query)
            key = (q.get("signature", [""])[0], q.get("timestamp", [""])[0], q.get("nonce", [""])[0])
            mark = rec.get("redelivered")
            why = None
            if m is None:
                why = "not a message sent as verified"
            elif rec["verified"] != "1":
                why = f"x-wechat-gate-verified {rec['verified']!r}"
            elif rec["body"] != m.xml:
                why = "a body other than the one sent"
            elif key not in m.queries:
                why = "a query not sent with this message"
            elif m.safe and (rec["decrypted"] != "1" or "encrypt_type" in q or "msg_signature" in q):
                why = "a safe-mode push not decrypted as configured"
            elif not m.safe and rec["decrypted"] is not None:
                why = "a plaintext push marked decrypted"
            elif rec["openid"] != m.openid:
                why = f"x-wechat-gate-openid {rec['openid']!r}"
            elif mark is not None and not (mark.isdigit() and int(mark) >= 1):
                why = f"{REDELIVERED} {mark!r}"
            if why:
                self.fail(f"the backend completed {rec['method']} {rec['path'][:80]}…: {why}")
                continue
            arrivals[m.id]["redelivered" if mark else "wechat"] += 1
        if bad_lines:
            self.fail(f"{bad_lines} records could not be read (a line cut by the kill?)")
        report["backend_records"] = sum(sum(a.values()) for a in arrivals.values())
        return arrivals

    def check_loss(self, arrivals, got, report):
        """What reached the backend, message by message (at least once: a message
        counts as delivered whether it came on WeChat's try, on the gate's marked
        redelivery, or both; more than one arrival is a duplicate, reported). With
        parking on: none lost. With parking off: the lost are exactly the pushes
        whose tries ended, while the backend was down, in `success` (or in WeChat
        giving up), less those the backend had read before the kill or read as it
        came back."""
        how = collections.Counter()
        lost, ended = [], collections.Counter()
        for m in self.msgs.values():
            a = arrivals.get(m.id, collections.Counter())
            ended[m.final or "never sent"] += 1
            if a["wechat"] and a["redelivered"]:
                how["on WeChat's try and redelivered"] += 1
            elif a["wechat"]:
                how["on WeChat's try"] += 1
            elif a["redelivered"]:
                how["redelivered only"] += 1
            else:
                lost.append(m)
        dups = {i: sum(a.values()) for i, a in arrivals.items() if sum(a.values()) > 1}
        if self.down_at is None or self.up_at is None:
            self.fail("the backend-down stretch did not happen (run longer, or --down-seconds)")
            down_at = up_at = float("inf")
        else:
            down_at, up_at = self.down_at, self.up_at

        def while_down(m):
            return m.final in ("success", "gave_up") and m.ended_at >= down_at and m.first_sent < up_at

        stretch = [m for m in self.msgs.values() if while_down(m)]
        had = [m for m in stretch if arrivals.get(m.id)]
        outside = [m for m in lost if not while_down(m)]
        report["messages"] = {
            "unique verified": len(self.msgs), "lost": len(lost), **how,
            "duplicates (MsgIds)": len(dups), "duplicates (extra arrivals)": sum(n - 1 for n in dups.values()),
            "tries ended in": dict(ended),
            "a try after a 5xx": sum(m.after_5xx for m in self.msgs.values()),
            "no answer within 5 s (tries)": self.no_answer, "slowest answer to a push (s)": round(self.slowest, 2),
            "while the backend was down": {
                "answered success": sum(m.final == "success" for m in stretch),
                "given up by WeChat": sum(m.final == "gave_up" for m in stretch),
                "the backend had them anyway": len(had),
            },
        }

        def ids(ms):
            return ", ".join(f"{m.id} ({m.final}, {m.tries} tries)" for m in ms[:5])

        if not stretch and self.down_at is not None:
            self.fail("no push was answered `success` (or given up) while the backend was down: the "
                      "stretch tested nothing (a longer --down-seconds, a higher --rate)")
        if not self.args.park_off:
            if lost:
                self.fail(f"LOSS: {len(lost)} of {len(self.msgs)} unique verified messages never reached the backend "
                          f"with parking on ({len(lost) - len(outside)} whose tries ended in `success` or gave up "
                          f"while the backend was down, {len(outside)} otherwise); first: {ids(lost)}")
            return
        # Parking off: the loss is what `success` (or WeChat giving up) while down explains.
        if outside:
            self.fail(f"{len(outside)} messages lost that were not answered `success` (nor given up) while the "
                      f"backend was down; first: {ids(outside)}")
        odd = [m for m in had if m.first_sent >= down_at and m.ended_at <= up_at]
        if odd:
            self.fail(f"{len(odd)} pushes sent and answered `success` while the backend was down reached it "
                      f"anyway; first: {ids(odd)}")
        if len(lost) != len(stretch) - len(had):
            self.fail(f"loss {len(lost)} ≠ {len(stretch) - len(had)}: {len(stretch)} pushes answered `success` (or "
                      f"given up) while the backend was down, less {len(had)} the backend had read at the kill or "
                      f"the restart")


def render(args, soak, report, started, wall, envoy_version, commit, api_calls):
    lines = []
    total = sum(soak.sent.values())
    lines.append(f"- date: {started:%Y-%m-%d %H:%M} UTC; wechat-gate {commit}; {envoy_version}")
    flags = f"--seconds {args.seconds} --rate {args.rate:g} --down-seconds {args.down_seconds:g}" + (
        " --park-off" if args.park_off else "")
    lines.append(f"- command: `bench/soak.py {flags}`; parking {'off (park.max_messages 0)' if args.park_off else 'on (park.max_messages 10000)'}; "
                 f"{wall:.0f} s in all, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    lines.append(f"- requests: {total} through Envoy `--concurrency 2` ({total / args.seconds:.0f} req/s over "
                 f"{args.seconds} s of load, WeChat's next tries and probes included); driver saturated {soak.saturated} times")
    lines.append("")
    lines.append("| kind | sent | outcomes |")
    lines.append("|---|---|---|")
    for kind in list(MIX) + ["next_try", "probe"]:
        outs = ", ".join(f"{o} {n}" for (k, o), n in sorted(soak.outcomes.items()) if k == kind)
        lines.append(f"| {kind} | {soak.sent.get(kind, 0)} | {outs} |")
    lines.append("")
    msgs = report["messages"]
    down = msgs["while the backend was down"]
    wechat_only, both = msgs.get("on WeChat's try", 0), msgs.get("on WeChat's try and redelivered", 0)
    lines.append(f"- messages: {msgs['unique verified']} unique verified, **{msgs['lost']} lost**; reached the backend "
                 f"on WeChat's try only {wechat_only}, by the gate's marked redelivery only "
                 f"{msgs.get('redelivered only', 0)}, both {both}; duplicates "
                 f"{msgs['duplicates (MsgIds)']} MsgIds ({msgs['duplicates (extra arrivals)']} extra arrivals); the backend "
                 f"completed {report['backend_records']} requests, each a verified message")
    lines.append(f"- WeChat's tries ended in: {msgs['tries ended in']}; {msgs['a try after a 5xx']} messages needed a "
                 f"try after a 5xx; {msgs['no answer within 5 s (tries)']} tries had no answer within 5 s (slowest "
                 f"answer {msgs['slowest answer to a push (s)']} s)")
    lines.append(f"- while the backend was down: {down['answered success']} pushes answered `success`, "
                 f"{down['given up by WeChat']} given up by WeChat after three tries, {down['the backend had them anyway']} "
                 f"of these read by the backend at the kill or the restart")
    lines.append("- parking: " + ", ".join(f"{k} {v}" for k, v in report["parking"].items())
                 + f"; Envoy's 5xx passed on: {report['envoy_5xx_passed'] or 0}")
    unsure = report["unsure_tries"]

    def counted(n, w, h):
        if w == h:
            return f"{n} {w}"
        if n in UNSURE_COUNTERS and w < h <= w + unsure:
            return f"{n} {w} (+{h - w})"
        return f"{n} {w} ≠ {h}"

    lines.append(f"- gate counters (expected from the answers / counted; (+n): within the {unsure} tries whose answer "
                 f"did not say): " + ", ".join(counted(n, w, h) for n, (w, h) in report["counters"].items()))
    ll = report["live_list"]
    lines.append(f"- live list: refresh_ok {ll['allowlist.refresh_ok']}, refresh_failed {ll['allowlist.refresh_failed']}; "
                 f"mock-api calls {api_calls}")
    rss = report["rss_kib"]
    if "base" in rss:
        lines.append(f"- Envoy RSS (every 10 s, {len(rss['samples'])} samples): {rss['base'] / 1024:.1f} MiB after the "
                     f"{rss['warm_up_s']:.0f} s warm-up, then {rss['min'] / 1024:.1f} to {rss['max'] / 1024:.1f} MiB "
                     f"(at most {rss['max_change_pct']} % from it)")
    lines.append(f"- VM failure lines in Envoy's log: {len(report['vm_failure_lines'])}; the gate's own log lines "
                 f"by level: {report['gate_log_lines']}")
    lines.append(f"- events: " + "; ".join(f"{t:.0f} s {w}" for t, w in soak.events if "source" not in w))
    lines.append(f"- failures: {len(soak.failures)}" + ("" if not soak.failures else ""))
    for f in soak.failures[:30]:
        lines.append(f"  - {f}")
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "backend":
        return backend_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600, help="seconds of load (default 600)")
    ap.add_argument("--rate", type=float, default=150, help="requests per second (default 150)")
    ap.add_argument("--max-inflight", type=int, default=300, help="requests in flight at most (default 300)")
    ap.add_argument("--down-seconds", type=float, default=None,
                    help="how long the backend is down, from 62 %% of the load (default: 4 %% of --seconds, at "
                         "least 20, longer than WeChat's 15 s of tries; less when the run is too short for it)")
    ap.add_argument("--park-off", action="store_true",
                    help="the gate with park.max_messages 0: asserts that the loss is the pushes answered "
                         "`success` while the backend was down, instead of no loss")
    ap.add_argument("--envoy", default=os.environ.get("ENVOY_BIN") or str(ROOT / ".venv/bin/envoy"))
    args = ap.parse_args()
    if args.seconds < 30 or not 1 <= args.rate <= 1000:
        ap.error("--seconds is at least 30, --rate 1 to 1000")
    room = (1 - DOWN_AT) * args.seconds - 2  # the backend is up again before the load ends
    if args.down_seconds is None:
        args.down_seconds = min(max(20.0, 0.04 * args.seconds), room)
    if not 1 <= args.down_seconds <= room:
        ap.error(f"--down-seconds is 1 to {room:.0f} with --seconds {args.seconds} (the backend must be up "
                 f"again before the load ends)")
    stop_all_on_signals()
    for need in (GATE_WASM, CLI, Path(args.envoy)):
        if not need.exists():
            print(f"soak: {need} is missing (make build; scripts/ensure-envoy.sh)", file=sys.stderr)
            return 2
    OUT.mkdir(parents=True, exist_ok=True)
    records = OUT / "backend-records.jsonl"
    records.unlink(missing_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    wall0 = time.monotonic()
    backend = Backend(records)
    api = MockApi(epoch_list(0)[0])
    envoy = Envoy(args.envoy, envoy_config(backend.port, api.port, args.park_off))
    log(f"Envoy pid {envoy.pid} on 127.0.0.1:{envoy.port} (admin {envoy.admin}), backend :{backend.port}, "
        f"mock-api :{api.port}; {args.seconds} s at {args.rate:.0f} req/s; scratch in {OUT.relative_to(ROOT)}")
    soak = Soak(args, envoy, backend, api)
    soak.run()
    report = soak.check(records)
    api_calls = api.calls()
    version = subprocess.run([args.envoy, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"/(\d+\.\d+\.\d+)/", version)
    version = f"Envoy {found.group(1) if found else '?'}"
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    text = render(args, soak, report, started, time.monotonic() - wall0, version, commit, api_calls)
    (OUT / "summary.md").write_text(text + "\n")
    (OUT / "report.json").write_text(json.dumps({"report": report, "failures": soak.failures,
                                                 "sent": soak.sent, "events": soak.events}, indent=1, default=str))
    print()
    print(text)
    print()
    print(f"soak: {'PASSED' if not soak.failures else 'FAILED'} (summary in {(OUT / 'summary.md').relative_to(ROOT)})")
    PROCS.stop_all()
    return 1 if soak.failures else 0


if __name__ == "__main__":
    sys.exit(main())
