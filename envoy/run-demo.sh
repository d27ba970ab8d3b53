#!/usr/bin/env bash
# `make run`: backend.py on 127.0.0.1:8080 and Envoy with the gate on 127.0.0.1:10000
# (admin 127.0.0.1:9901). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY=$(scripts/ensure-envoy.sh)
CLI=target/release/wechat-gate
if [ -z "${WECHAT_TOKEN:-}" ]; then
  export WECHAT_TOKEN=wechat-gate-demo-token
  TOKEN_HINT="export WECHAT_TOKEN=$WECHAT_TOKEN"
else
  TOKEN_HINT="export WECHAT_TOKEN=...   # the same token you gave this demo"
fi

python3 envoy/backend.py --port 8080 &
BACKEND=$!
# Envoy's own log at warn; the gate's lines (one per rejection) at debug.
"$ENVOY" -c envoy/envoy.yaml --use-dynamic-base-id --log-level warn --component-log-level wasm:debug &
ENVOY_PID=$!
trap 'kill "$BACKEND" "$ENVOY_PID" 2>/dev/null || true; wait 2>/dev/null || true; echo "demo stopped"' EXIT
trap 'exit 0' INT TERM

for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:9901/ready >/dev/null 2>&1; then break; fi
  if ! kill -0 "$ENVOY_PID" 2>/dev/null; then echo "Envoy exited: see the log above" >&2; exit 1; fi
  sleep 0.1
done

cat <<TXT

wechat-gate demo is up: Envoy $("$ENVOY" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/[A-Za-z]*' | head -1) on http://127.0.0.1:10000/wechat, backend on :8080.
Try, in another shell:

  $TOKEN_HINT
  $CLI send handshake http://127.0.0.1:10000/wechat --token "\$WECHAT_TOKEN"            # 200, echoes echostr
  $CLI send message   http://127.0.0.1:10000/wechat --token "\$WECHAT_TOKEN" --text hi  # 200 success, backend logs it
  $CLI send message   http://127.0.0.1:10000/wechat --token wrong --text hi            # 401 signature
  $CLI send message   http://127.0.0.1:10000/wechat --token "\$WECHAT_TOKEN" --text hi --source 127.0.0.3  # 403 source
  curl -s http://127.0.0.1:9901/stats | grep wechat_gate                                  # the counters

Ctrl-C stops both.
TXT
wait -n "$BACKEND" "$ENVOY_PID"
