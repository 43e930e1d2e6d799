#!/usr/bin/env bash
# llama.cpp's own router and sleep tests (tools/server/tests/unit/test_router.py, test_sleep.py)
# against llamajit, with the Hugging Face models they ask for replaced by the local ones.
# ../shared/tools/peer-suite/run runs them against an empty cache, where the router has no model
# at all; this script runs them the same way (its pytest plugin, its Python, offline, loopback)
# but with a cache that holds, under the names the tests use:
#   ggml-org/tinygemma3-GGUF:Q8_0                -> models/gemma-3-270m-q4_k_m.gguf
#   ggml-org/test-model-stories260K:F32          -> models/SmolLM2-135M-Instruct.Q4_1.gguf
#   ggml-org/test-model-stories260K-infill:F32   -> the same SmolLM2 file
# Not part of `make test`. Usage: tests/peer/router_suite.sh [SERVER_BIN] (default .venv/bin/llama-server)
# Results: $OUT (default /tmp/llamajit-router-suite): pytest.log, results.jsonl.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$(realpath "${1:-$here/.venv/bin/llama-server}")"
peer="$here/../shared/tools/peer-suite"
src="${PEER_LLAMA_CPP_DIR:-$HOME/.cache/llamacpp-peer/src/llama_cpp_python-0.3.36/vendor/llama.cpp}"
py="${PEER_PYTHON:-/tmp/peervenv/bin/python}"
out="${OUT:-/tmp/llamajit-router-suite}"
if [[ ! -x "$py" ]]; then  # as the peer suite does: a venv with the tests' requirements
    python3 -m venv "$(dirname "$(dirname "$py")")" >&2
    "$py" -m pip install -q -r "$src/tools/server/tests/requirements.txt" pytest-timeout >&2
fi
work="$(mktemp -d /tmp/router_suite.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/llama.cpp/tools/server" "$work/llama.cpp/models"
cp -r "$src/tools/server/tests" "$work/llama.cpp/tools/server/tests"
cp -r "$src/models/templates" "$work/llama.cpp/models/templates"
mkdir -p "$work/llama.cpp/tools/server/tests/tmp"
cache() {  # cache REPO FILE TARGET: huggingface_hub's layout, the file a link to the local model
    local d="$work/cache/models--${1//\//--}" rev=0000000000000000000000000000000000000000
    mkdir -p "$d/refs" "$d/blobs" "$d/snapshots/$rev"
    echo -n "$rev" > "$d/refs/main"
    ln -s "$3" "$d/snapshots/$rev/$2"
}
cache ggml-org/tinygemma3-GGUF tinygemma3-Q8_0.gguf "$here/models/gemma-3-270m-q4_k_m.gguf"
cache ggml-org/test-model-stories260K stories260K-F32.gguf "$here/models/SmolLM2-135M-Instruct.Q4_1.gguf"
cache ggml-org/test-model-stories260K-infill stories260K-infill-F32.gguf "$here/models/SmolLM2-135M-Instruct.Q4_1.gguf"
for v in $(env | sed -n 's/^\(LLAMA_ARG_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export LLAMA_SERVER_BIN_PATH="$bin" PEER_MODEL_GGUF="$here/models/SmolLM2-135M-Instruct.Q4_1.gguf" PEER_THREADS=1
export PEER_RESULTS_JSONL="$out/results.jsonl" LLAMA_CACHE="$work/cache" HF_HOME="$work/hf" HF_HUB_CACHE="$work/cache"
export HF_HUB_OFFLINE=1 NO_PROXY="127.0.0.1,localhost,::1"
PORT="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export PORT
rm -f "$out/results.jsonl"
cd "$work/llama.cpp/tools/server/tests"
set +e
timeout -k 15 900 "$py" -B "$peer/peer_pytest.py" -p peer_plugin -p no:cacheprovider -m "not slow" --timeout=120 \
    -rfEs --tb=short unit/test_router.py unit/test_sleep.py < /dev/null > "$out/pytest.log" 2>&1
rc=$?
set -e
tail -25 "$out/pytest.log"
exit $rc
