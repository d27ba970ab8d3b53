#!/usr/bin/env bash
# Prints the path of a Python that can `import wechatpy` (the independent WeChat SDK the
# safe-mode end-to-end tests check the gate's replies with), installing wechatpy 1.8.18
# and its AES backend from PyPI into the project's .venv when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pip ] || python3 -m venv .venv >&2
if ! .venv/bin/python -c "import wechatpy.crypto, cryptography" 2>/dev/null; then
  echo "installing wechatpy==1.8.18 into .venv (PyPI) ..." >&2
  .venv/bin/pip install --quiet --disable-pip-version-check "wechatpy==1.8.18" cryptography >&2
fi
echo "$PWD/.venv/bin/python"
