#!/usr/bin/env python3
"""A stand-in WeChat backend (Python standard library only).

Logs every request it gets with its x-wechat-gate-* headers and body. A text message
gets a plaintext XML text reply ("收到: <content>"), which the gate seals when the push
came in safe mode; anything else gets `success`, which tells WeChat the message was
handled and shows the user nothing.
Usage: python3 envoy/backend.py [--port 8080] [--host 127.0.0.1]
"""
import argparse
import sys
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def text_reply(body):
    """The passive reply to a text message, or `success` for anything else."""
    try:
        msg = ET.fromstring(body)
    except ET.ParseError:
        return b"success", "text/plain; charset=utf-8"
    if msg.findtext("MsgType") != "text":
        return b"success", "text/plain; charset=utf-8"
    fields = {
        "ToUserName": msg.findtext("FromUserName") or "",
        "FromUserName": msg.findtext("ToUserName") or "",
        "Content": "收到: " + (msg.findtext("Content") or ""),
    }
    cdata = {k: "<![CDATA[" + v.replace("]]>", "]]]]><![CDATA[>") + "]]>" for k, v in fields.items()}
    xml = (
        f"<xml><ToUserName>{cdata['ToUserName']}</ToUserName>"
        f"<FromUserName>{cdata['FromUserName']}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{cdata['Content']}</Content></xml>"
    )
    return xml.encode("utf-8"), "application/xml; charset=utf-8"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _read_body(self):
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self):
        body = self._read_body()
        gate = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-wechat-gate-")}
        print(
            f"backend: {self.command} {self.path} gate={gate} body={body.decode('utf-8', 'replace')}",
            flush=True,
        )
        reply, content_type = text_reply(body)
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, fmt, *args):  # the line above says it all
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"backend: listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
