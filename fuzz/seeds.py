#!/usr/bin/env python3
"""Writes the fuzz targets' seeds into fuzz/corpus/<target>/: queries, bodies and
`Encrypt` values from the wechatpy vectors (tests/data/wechat_vectors.json), and small
hand-made inputs. Idempotent (same names, same bytes); `make fuzz` runs it first.

Structured targets (Arbitrary inputs) get seeds laid out as the `arbitrary` crate
reads them: an enum's variant is a little-endian u32 in front, and the last field
takes the rest of the bytes."""

import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent
VECTORS = ROOT.parent / "tests" / "data" / "wechat_vectors.json"
CORPUS = ROOT / "corpus"


def variant(index: int, count: int) -> bytes:
    """The u32 that `arbitrary` maps to variant `index` of `count`."""
    return struct.pack("<I", -(-(index << 32) // count))


def write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"seed-{name}"
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def header_map(pairs) -> bytes:
    out = struct.pack("<I", len(pairs))
    for n, v in pairs:
        out += struct.pack("<II", len(n), len(v))
    for n, v in pairs:
        out += n + b"\0" + v + b"\0"
    return out


def main() -> None:
    vectors = json.loads(VECTORS.read_text())
    for i, h in enumerate(vectors["handshake"][:4]):
        q = f"signature={h['signature']}&timestamp={h['timestamp']}&nonce={h['nonce']}&echostr={h['echostr']}"
        write("query", f"vec-handshake-{i}", q.encode())
    for i, s in enumerate(vectors["safe_mode"][:4]):
        query = "&".join(f"{k}={v}" for k, v in s["post_query"].items())
        write("query", f"vec-post-{i}", query.encode())
        write("xml", f"vec-post-{i}", s["post_body"].encode())
        write("xml", f"vec-reply-{i}", s["reply_envelope"].encode())
        write("xml", f"vec-plain-{i}", s["plaintext"][:600].encode())
        write("safe_mode", f"vec-encrypt-{i}", variant(0, 5) + s["encrypt"].encode())
    write("query", "hand-percent", b"echostr=a%2Bb+c%20d%E5%BE%AE&nonce=%6e&%73ignature=x&encrypt_type=aes&msg_signature=m")
    write("query", "hand-repeated", b"nonce=1&%6eonce=2&x=1&&=3")

    write("header_map", "hand-request", header_map([
        (b":method", b"POST"),
        (b":path", b"/wechat?signature=s&timestamp=1&nonce=2"),
        (b"content-length", b"12"),
        (b"x-wechat-gate-verified", b"\xff"),
    ]))
    write("header_map", "hand-empty", header_map([]))

    write("xml", "hand-nested", b"<?xml version=\"1.0\"?><!-- c --><xml><A><B><C/></B></A><Content><![CDATA[<Encrypt>x</Encrypt>]]></Content><MsgId>1</MsgId><MsgId>1</MsgId></xml>")
    write("xml", "hand-event", b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName>o1</FromUserName><CreateTime>5</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>k</EventKey></xml>")
    write("xml", "hand-auth", b"<xml><AppId>wxc</AppId><CreateTime>1</CreateTime><InfoType>component_verify_ticket</InfoType><ComponentVerifyTicket>t</ComponentVerifyTicket></xml>")

    write("json", "hand-text", b'{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":99}')
    write("json", "hand-event", b'\xef\xbb\xbf {"ToUserName":"gh","FromUserName":"o","CreateTime":5,"Event":"CLICK","EventKey":"k","Info":{"a":[1,null]}}')
    write("json", "hand-repeated", b'{"MsgId":1,"MsgId":2,"Encrypt":"QUFB","X":1.5e3,"Y":true}')

    write("safe_mode", "hand-ciphertext", variant(1, 5) + bytes(range(48)))
    write("safe_mode", "hand-plaintext", variant(2, 5) + b"r" * 16 + struct.pack(">I", 2) + b"hiwx0123456789abcdef" + bytes([10] * 10))

    configs = {
        "minimal": {"token": "t", "source": {"allow": ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]}},
        "safe": {"path": "/wechat", "token": {"env": "TOKEN"}, "appid": "wx1", "source": {"mode": "report"},
                 "safe_mode": {"encoding_aes_key": {"env": "KEY"}, "decrypt": True, "require": True},
                 "timestamp_tolerance_seconds": 300, "max_body_bytes": 65536, "dedupe_seconds": 15},
        "live": {"token": ["t1", "t0"], "appid": "wx1", "on_upstream_failure": "pass",
                 "source": {"when_unavailable": "allow", "wechat_api": {"secret": {"env": "SECRET"}, "token_api": "classic",
                            "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}],
                            "refresh_seconds": 3600, "timeout_ms": 5000}}},
        "wecom": {"platform": "wecom", "path": "/wecom", "token": "t", "appid": "ww1", "source": {"mode": "off"},
                  "safe_mode": {"encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}},
        "open": {"platform": "open_platform", "name": "component-1", "path": "/wechat/$APPID$/callback", "token": "t",
                 "appid": "wxc", "source": {"mode": "off"},
                 "safe_mode": {"encoding_aes_key": ["abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", {"env": "KEY"}]}},
    }
    configs["api"] = {"role": "api", "path": "/wechat-api/mp", "platform": "mini_program", "appid": "wx1",
                      "wechat_api": {"secret": {"env": "SECRET"},
                                     "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]},
                      "callers": ["10.0.0.0/8", "::1"], "max_body_bytes": 1048576}
    for name, c in configs.items():
        write("config", f"hand-{name}", json.dumps(c).encode())

    ok = b"\x00\x01"  # status None, then ok = true (200)
    write("wechat_api", "hand-token", ok + b'{"access_token":"ACCESS_TOKEN","expires_in":7200}')
    write("wechat_api", "hand-list", ok + b'{"ip_list":["101.226.103.0/25"," 1.2.3.4 ","::1",7,"10.1.2.3/8","x"]}')
    write("wechat_api", "hand-errcode", ok + b'{"errcode":40164,"errmsg":"invalid ip 1.2.3.4, not in whitelist"}')


if __name__ == "__main__":
    main()
