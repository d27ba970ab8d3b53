#!/usr/bin/env bash
# `make run`: backend.py on 127.0.0.1:8080, `wechat-gate mock-api` (WeChat's API
# stand-in) on 127.0.0.1:8081 and Envoy with the gate on 127.0.0.1:10000 (admin
# 127.0.0.1:9901), and the API role (backends call WeChat through the gate, holding no
# secret) on 127.0.0.1:10001, loopback only. With WECHAT_APPID and WECHAT_APPSECRET set, the gate uses WeChat's
# real API instead (envoy/envoy-wechat.yaml) and no mock-api is started.
# Ctrl-C stops everything.
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
if [ -z "${WECHAT_AES_KEY:-}" ]; then
  # Safe mode's EncodingAESKey (43 base64 characters); a real account's is in its settings.
  export WECHAT_AES_KEY=wechatGateDemoEncodingAESKey0123456789abcde
  KEY_HINT="export WECHAT_AES_KEY=$WECHAT_AES_KEY"
else
  KEY_HINT="export WECHAT_AES_KEY=...   # the same EncodingAESKey you gave this demo"
fi
APPID=${WECHAT_APPID:-wx0123456789abcdef}

for port in 8080 8081 10000 10001 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make run: port $port on 127.0.0.1 is already in use (the demo uses 8080, 8081, 10000, 10001 and 9901)" >&2
    exit 1
  fi
done

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${TMPCFG:-}" ] && rm -f "$TMPCFG"; echo "demo stopped"' EXIT

python3 envoy/backend.py --port 8080 &
PIDS+=($!)
if [ -n "${WECHAT_APPID:-}" ] && [ -n "${WECHAT_APPSECRET:-}" ]; then
  TMPCFG=$(mktemp --suffix=.yaml)
  sed "s/wx0123456789abcdef/$WECHAT_APPID/" envoy/envoy-wechat.yaml > "$TMPCFG"
  CONFIG=$TMPCFG
  SOURCE_NOTE="WeChat's real API (api.weixin.qq.com, AppID $WECHAT_APPID)"
  SECRET_HINT="export WECHAT_APPSECRET=...   # the same AppSecret you gave this demo"
  DOCTOR="$CLI doctor --appid $WECHAT_APPID --gate-admin http://127.0.0.1:9901"
else
  export WECHAT_APPSECRET=wechat-gate-demo-secret
  # The AppSecret is read from WECHAT_APPSECRET: secrets never go in an argument.
  "$CLI" mock-api --listen 127.0.0.1:8081 --appid wx0123456789abcdef \
    --callback-ip 127.0.0.1 --callback-ip 127.0.0.2 &
  PIDS+=($!)
  CONFIG=envoy/envoy.yaml
  SOURCE_NOTE="mock-api on :8081 (callback IPs 127.0.0.1, 127.0.0.2)"
  # The demo config's other platforms (docs/platforms.md), same token and key.
  PLATFORMS="
The other platforms, on the same Envoy (same token and key):
  $CLI send message   http://127.0.0.1:10000/mp --platform mini-program --json --text hi   # a Mini Program's JSON push
  $CLI send message   http://127.0.0.1:10000/mp --platform mini-program --json --text hi --safe-mode --appid wx00000000000000aa
  $CLI send handshake http://127.0.0.1:10000/wecom --platform wecom --safe-mode --appid ww0123456789abcdef
                                           # WeCom: echostr encrypted, msg_signature only; answered decrypted
  $CLI send message   http://127.0.0.1:10000/wecom --platform wecom --text hi --safe-mode --appid ww0123456789abcdef
  $CLI send message   http://127.0.0.1:10000/open/wx1111111111111111/callback --platform open-platform --text hi --safe-mode --appid wx00000000000000c0
                                           # Open Platform: backend.py sees x-wechat-gate-authorizer-appid"
  SECRET_HINT="export WECHAT_APPSECRET=$WECHAT_APPSECRET"
  DOCTOR="$CLI doctor --appid wx0123456789abcdef --api http://127.0.0.1:8081 --gate-admin http://127.0.0.1:9901"
fi
# The API role (docs/api-role.md): what a backend sends, with no AppSecret and no token.
GATE_API=http://127.0.0.1:10001/wechat-api/mp
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
API_EXAMPLES="
The API role on $GATE_API (loopback only): WeChat's API with no AppSecret, no token.
  curl -s $GATE_API/cgi-bin/get_api_domain_ip                        # WeChat's answer: the gate added the real token
  curl -s '$GATE_API/cgi-bin/user/info?openid=o_demo_1&lang=zh_CN'   # a user's profile, the same way
  curl -s $GATE_API/cgi-bin/token                                    # a stand-in, never WeChat's token
  curl -s '$GATE_API/wechat-gate/jssdk-config?url=https%3A%2F%2Fexample.com%2Fpage'   # a signed JS-SDK config
  $CLI doctor --gate-api $GATE_API   # the gate checked end to end from here
  $PY -c 'from wechatpy import WeChatClient
c = WeChatClient(\"$APPID\", None, access_token=\"stand-in\")   # wechatpy 1.8: no AppSecret
c.API_BASE_URL = \"$GATE_API/cgi-bin/\"
print(c.user.get(\"o_demo_1\"))'"
# Envoy's own log at warn; the gate's lines (one per rejection, list refreshes) at debug.
"$ENVOY" -c "$CONFIG" --use-dynamic-base-id --log-level warn --component-log-level wasm:debug &
ENVOY_PID=$!
PIDS+=($ENVOY_PID)
trap 'exit 0' INT TERM

for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:9901/ready >/dev/null 2>&1; then break; fi
  if ! kill -0 "$ENVOY_PID" 2>/dev/null; then echo "Envoy exited: see the log above" >&2; exit 1; fi
  sleep 0.1
done

cat <<TXT

wechat-gate demo is up: Envoy $("$ENVOY" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/[A-Za-z]*' | head -1) on http://127.0.0.1:10000/wechat, backend on :8080.
Callback IP list from $SOURCE_NOTE.
Try, in another shell (the CLI reads secrets from the environment, never from arguments):

  $TOKEN_HINT
  $CLI send handshake http://127.0.0.1:10000/wechat                # 200, echoes echostr
  $KEY_HINT
  $CLI send message   http://127.0.0.1:10000/wechat --text hi      # 200 and backend.py's XML reply
  $CLI send message   http://127.0.0.1:10000/wechat --text hi --safe-mode --appid $APPID
                                           # safe mode: backend.py gets plaintext, you get its reply sealed
  WECHAT_TOKEN=wrong $CLI send message http://127.0.0.1:10000/wechat --text hi              # 401 signature
  $CLI send message   http://127.0.0.1:10000/wechat --text hi --source 127.0.0.3            # 403 source
  curl -s http://127.0.0.1:9901/stats/prometheus | grep '^wechat_gate'                  # the counters, per account
  $SECRET_HINT
  $DOCTOR
                                           # token, lists, network: what the gate needs from WeChat's API
${PLATFORMS:-}
$API_EXAMPLES

Ctrl-C stops them all.
TXT
wait -n "${PIDS[@]}" || true
echo "a demo process exited (see its message above); stopping the others" >&2
