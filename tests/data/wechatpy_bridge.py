"""The independent SDK's side of the safe-mode end-to-end tests: wechatpy (installed
from PyPI by scripts/ensure-wechatpy.sh) encrypts a push or opens a reply.

  encrypt TOKEN KEY APPID NONCE TIMESTAMP   stdin: plaintext XML  stdout: wechatpy's envelope
  decrypt TOKEN KEY APPID MSG_SIGNATURE TIMESTAMP NONCE
                                            stdin: envelope       stdout: plaintext XML
Exits 1 with wechatpy's error when it refuses.
"""
import sys

from wechatpy.crypto import WeChatCrypto


def main(argv):
    command, token, key, appid, *rest = argv
    crypto = WeChatCrypto(token, key, appid)
    data = sys.stdin.buffer.read().decode("utf-8")
    if command == "encrypt":
        nonce, timestamp = rest
        out = crypto.encrypt_message(data, nonce, timestamp)
    elif command == "decrypt":
        signature, timestamp, nonce = rest
        out = crypto.decrypt_message(data, signature, timestamp, nonce)
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
