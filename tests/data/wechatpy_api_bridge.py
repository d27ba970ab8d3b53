"""wechatpy 1.8.18 (scripts/ensure-wechatpy.sh) pointed at the gate's API role with NO
AppSecret, as a backend would use it: `WeChatClient(appid, None, access_token=...)` with
the client's `API_BASE_URL` (and WeChatWxa's, WeChatOAuth's, which carry their own) set to
the gate's prefix. The token given at construction is a placeholder: the gate puts the
real one in every call. Every command prints one JSON object of what wechatpy got; a
wechatpy error exits 1 with it on stderr.

  oa BASE APPID OPENID MEDIA_FILE OUT_FILE PAGE_URL
      a custom text message, the user's info, a media upload (MEDIA_FILE, image) and its
      download (to OUT_FILE), the jsapi ticket, the gate's jssdk-config for PAGE_URL and
      wechatpy's own signature over the same nonce, timestamp and url; an OAuth code
      exchanged by WeChatOAuth
  mini BASE APPID JS_CODE        WeChatWxa.code_to_session
  wecom BASE CORPID AGENTID USER wechatpy.enterprise: message.send_text
  sign TICKET NONCE TIMESTAMP URL
      {"signature": wechatpy's JS-SDK config signature} (WeChatJSAPI.get_jsapi_signature)

BASE is the gate's prefix with a trailing slash: http://127.0.0.1:PORT/wechat-api/mp/
"""
import json
import sys

import requests
from wechatpy import WeChatClient, WeChatOAuth
from wechatpy.enterprise import WeChatClient as WeComClient

PLACEHOLDER = "not-a-token-the-gate-sets-the-real-one"


def client(base, appid):
    c = WeChatClient(appid, None, access_token=PLACEHOLDER)
    c.API_BASE_URL = base + "cgi-bin/"
    c.wxa.API_BASE_URL = base
    return c


def official_account(base, appid, openid, media_file, out_file, page_url):
    c = client(base, appid)
    send = c.message.send_text(openid, "hello from wechatpy")
    user = c.user.get(openid)
    with open(media_file, "rb") as f:
        upload = c.media.upload("image", ("gate.png", f, "image/png"))
    media = c.media.download(upload["media_id"])
    with open(out_file, "wb") as f:
        f.write(media.content)
    ticket = c.jsapi.get_jsapi_ticket()
    r = requests.get(base + "wechat-gate/jssdk-config", params={"url": page_url}, timeout=10)
    config = r.json()
    signature = c.jsapi.get_jsapi_signature(
        config["nonceStr"], ticket, config["timestamp"], page_url
    )
    oauth = WeChatOAuth(appid, None, "https://example.com/back")
    oauth.API_BASE_URL = base
    web = oauth.fetch_access_token("oauth-code-e2e")
    return {
        "send": send,
        "user": user,
        "upload": upload,
        "download_status": media.status_code,
        "download_type": media.headers.get("content-type"),
        "download_disposition": media.headers.get("content-disposition"),
        "ticket": ticket,
        "gate_config_status": r.status_code,
        "gate_config": config,
        "wechatpy_signature": signature,
        "oauth": web,
    }


def mini(base, appid, js_code):
    return {"session": client(base, appid).wxa.code_to_session(js_code)}


def wecom(base, corpid, agent_id, user):
    # An empty secret, not None: the enterprise client keys its token cache on secret[:10].
    c = WeComClient(corpid, "", access_token=PLACEHOLDER)
    c.API_BASE_URL = base + "cgi-bin/"
    return {"send": c.message.send_text(int(agent_id), user, "hello from wechatpy.enterprise")}


def sign(ticket, nonce, timestamp, url):
    c = WeChatClient("wx-unused", None, access_token=PLACEHOLDER)
    return {"signature": c.jsapi.get_jsapi_signature(nonce, ticket, timestamp, url)}


def main(argv):
    command, *rest = argv
    commands = {"oa": official_account, "mini": mini, "wecom": wecom, "sign": sign}
    if command not in commands:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(commands[command](*rest), ensure_ascii=False))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as e:  # wechatpy's error, reported to the test
        print(f"wechatpy: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
