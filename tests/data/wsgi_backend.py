"""A backend that reads headers the way CGI-style servers do: Python's own WSGI
server (wsgiref, standard library). It folds `-` and `_` in header names into one
`HTTP_…` variable, as PHP, WSGI and many Java containers do, so a client-sent
`x_wechat_gate_verified` arrives as `HTTP_X_WECHAT_GATE_VERIFIED` unless the proxy
removed it.

Prints `listening on 127.0.0.1:PORT` first; answers every request with a JSON object
of the `HTTP_X_WECHAT_GATE_*` variables it saw (and `PATH_INFO`, `BODY_BYTES`).
Usage: python3 tests/data/wsgi_backend.py
"""
import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_X_WECHAT_GATE_")}
    seen["PATH_INFO"] = environ.get("PATH_INFO", "")
    seen["BODY_BYTES"] = len(body)
    out = json.dumps(seen, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main():
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    print(f"listening on 127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
