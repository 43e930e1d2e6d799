"""`python -m service.precompile MODEL` as a subprocess: it samples tokens through both default
KV cache types, leaves the compiled layer in Numba's cache, and refuses a missing file."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.server_proc import ROOT, SMOLLM2


def test_precompile_fills_the_cache():
    p = subprocess.run([sys.executable, "-m", "service.precompile", str(SMOLLM2)], capture_output=True, text=True,
                       cwd=ROOT, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    # two KV cache types x two sequences x 4 tokens, less the default chain's early EOS at most
    assert p.stdout.startswith("precompiled the kernels (") and int(p.stdout.split("(")[1].split()[0]) >= 10
    if not os.environ.get("NUMBA_CACHE_DIR"):  # else the cache lives there, under another layout
        assert list((ROOT / "service" / "model" / "__pycache__").glob("layer.layer-*.nbi"))


def test_precompile_refuses_a_missing_model(tmp_path):
    p = subprocess.run([sys.executable, "-m", "service.precompile", str(tmp_path / "none.gguf")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode != 0 and "none.gguf" in p.stderr
