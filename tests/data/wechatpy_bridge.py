"""The independent SDK's side of the safe-mode end-to-end tests: wechatpy (installed
from PyPI by scripts/ensure-wechatpy.sh) encrypts a push or opens a reply.

  encrypt TOKEN KEY APPID NONCE TIMESTAMP   stdin: plaintext XML  stdout: wechatpy's envelope
  decrypt TOKEN KEY APPID MSG_SIGNATURE TIMESTAMP NONCE
                                            stdin: envelope       stdout: plaintext XML

  encrypt-json TOKEN KEY APPID NONCE TIMESTAMP
      stdin: plaintext JSON (a Mini Program's push)
      stdout: {"body": {"ToUserName","Encrypt"} as JSON text, "msg_signature": …}
  decrypt-json TOKEN KEY APPID MSG_SIGNATURE TIMESTAMP NONCE
      stdin: a JSON envelope                stdout: the plaintext

  wecom-encrypt TOKEN KEY CORPID NONCE TIMESTAMP
      stdin: plaintext (a push's XML, or a handshake's echostr)
      stdout: {"encrypt": …, "msg_signature": …} with wechatpy.enterprise's cipher
  wecom-decrypt TOKEN KEY CORPID MSG_SIGNATURE TIMESTAMP NONCE
      stdin: envelope                       stdout: plaintext, by wechatpy.enterprise

wechatpy has no JSON envelope of its own: the JSON commands use its cipher (PrpCrypto)
and signature (_get_signature) and let decrypt_message read a parsed dict.
Exits 1 with wechatpy's error when it refuses.
"""
import json
import sys

from wechatpy.crypto import PrpCrypto, WeChatCrypto, _get_signature
from wechatpy.enterprise.crypto import PrpCrypto as WeComPrpCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto


def sealed(cipher, token, account, data, nonce, timestamp):
    encrypt = cipher.encrypt(data, account)
    if isinstance(encrypt, bytes):
        encrypt = encrypt.decode("ascii")
    return encrypt, _get_signature(token, timestamp, nonce, encrypt)


def main(argv):
    command, token, key, account, *rest = argv
    data = sys.stdin.buffer.read().decode("utf-8")
    if command == "encrypt":
        nonce, timestamp = rest
        out = WeChatCrypto(token, key, account).encrypt_message(data, nonce, timestamp)
    elif command == "decrypt":
        signature, timestamp, nonce = rest
        out = WeChatCrypto(token, key, account).decrypt_message(data, signature, timestamp, nonce)
    elif command == "encrypt-json":
        nonce, timestamp = rest
        plain = json.loads(data)
        crypto = WeChatCrypto(token, key, account)
        encrypt, signature = sealed(PrpCrypto(crypto.key), token, account, data, nonce, timestamp)
        body = json.dumps({"ToUserName": plain["ToUserName"], "Encrypt": encrypt})
        out = json.dumps({"body": body, "msg_signature": signature})
    elif command == "decrypt-json":
        signature, timestamp, nonce = rest
        crypto = WeChatCrypto(token, key, account)
        out = crypto.decrypt_message(json.loads(data), signature, timestamp, nonce)
    elif command == "wecom-encrypt":
        nonce, timestamp = rest
        crypto = WeComCrypto(token, key, account)
        encrypt, signature = sealed(WeComPrpCrypto(crypto.key), token, account, data, nonce, timestamp)
        out = json.dumps({"encrypt": encrypt, "msg_signature": signature})
    elif command == "wecom-decrypt":
        signature, timestamp, nonce = rest
        out = WeComCrypto(token, key, account).decrypt_message(data, signature, timestamp, nonce)
    else:
        raise SystemExit(f"unknown command {command}")
    if isinstance(out, bytes):
        out = out.decode("utf-8")
    sys.stdout.buffer.write(out.encode("utf-8"))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as e:  # wechatpy's refusal, reported to the test
        print(f"wechatpy: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
