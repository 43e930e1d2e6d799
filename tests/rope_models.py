"""Tiny synthetic models with RoPE scaling (llama3 freq factors, YaRN, phi3's longrope), shared by the recorder
tests/fixtures/record_rope_scaling.py (llama.cpp's outputs) and tests/test_rope_scaling.py.

Each case is a tests.synthetic Spec, metadata as llama.cpp's converter writes it, and extra
tensors; write_case() builds the file with gguf.GGUFWriter from a fixed seed, so the recorder
and the test write the same bytes (the fixture keeps the file's sha256 to prove it).

The scaling is made to matter at the few dozen positions a test runs: original context
lengths of 32 tokens, so most rotary pairs are in the scaled range. longrope's model (LONGROPE,
read by tests/test_rope_longrope.py) is recorded at several contexts instead (LONGROPE_RUNS).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tests.synthetic import Spec, write_model

N_VOCAB = 72


def llama3_freq_factors(n_dims: int, base: float, factor: float, low: float, high: float, n_orig: int) -> np.ndarray:
    """rope_freqs.weight as the converter derives it from HF's llama3 rope_scaling: pairs whose
    wavelength is under n_orig / high keep their frequency (1), over n_orig / low are divided by
    factor, and in between a smooth blend."""
    out = []
    for i in range(0, n_dims, 2):
        freq = 1.0 / base ** (i / n_dims)
        wavelen = 2 * math.pi / freq
        if wavelen < n_orig / high:
            out.append(1.0)
        elif wavelen > n_orig / low:
            out.append(factor)
        else:
            smooth = (n_orig / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, np.float32)


def _yarn(arch: str, factor: float, n_orig: int) -> dict:
    return {f"{arch}.rope.scaling.type": "yarn", f"{arch}.rope.scaling.factor": factor,
            f"{arch}.rope.scaling.original_context_length": n_orig}


CASES = {
    # Llama 3.1/3.2: llama3 scaling is only the rope_freqs tensor (normal pair ordering).
    "llama3": (Spec("llama", eps=1e-5, n_vocab=N_VOCAB, tied=False, seed=11), {"llama.rope.freq_base": 10000.0},
               {"rope_freqs.weight": llama3_freq_factors(16, 10000.0, 8.0, 1.0, 4.0, 32)}),
    "llama-yarn": (Spec("llama", eps=1e-5, n_vocab=N_VOCAB, tied=False, seed=12), _yarn("llama", 4.0, 32), {}),
    # Qwen2.5 with YaRN: NeoX ordering, QKV biases, a separate head.
    "qwen2-yarn": (Spec("qwen2", n_embd=128, n_ff=160, n_head=2, n_head_kv=1, tied=False, rope_base=1e6,
                        n_vocab=N_VOCAB, seed=13), _yarn("qwen2", 4.0, 32), {}),
}


def longrope_factors(half: int, seed: int) -> dict[str, np.ndarray]:
    """Phi-3 128k's two tables in their usual shape: short factors near 1, long ones growing
    geometrically to tens for the slow pairs; every pair's long factor differs from its short one."""
    r = np.random.default_rng(seed).random((2, half))
    x = np.arange(half) / (half - 1)
    return {"rope_factors_long.weight": (1.5 * 30.0 ** x * (1 + 0.1 * r[0])).astype(np.float32),
            "rope_factors_short.weight": (1.0 + 0.3 * x + 0.05 * r[1]).astype(np.float32)}


N_ORIG, N_TRAIN = 320, 4096
# The converter's attention factor for longrope: sqrt(1 + ln(scale) / ln(original)), scale = trained / original.
LONGROPE_ATTN = math.sqrt(1 + math.log(N_TRAIN / N_ORIG) / math.log(N_ORIG))
# Phi-3 128k as converted: the original context and the attention factor as metadata (no scaling type
# key), the two tables as tensors. llama.cpp takes the long table when its context per sequence, -c
# rounded up to a multiple of 256, exceeds the original context: 320 is above one such step, so -c 256
# runs the short table, -c 300 (512 after rounding) and -c 512 the long one.
LONGROPE = {
    "phi3-longrope": (Spec("phi3", n_embd=96, n_ff=128, n_head=3, n_head_kv=3, tied=False, eps=1e-5,
                           n_vocab=N_VOCAB, n_ctx=N_TRAIN, seed=71),
                      {"phi3.rope.scaling.original_context_length": N_ORIG,
                       "phi3.rope.scaling.attn_factor": LONGROPE_ATTN, "phi3.attention.sliding_window": 0},
                      longrope_factors(16, 72)),
}
# fixture entry -> (model, llama-server's -c)
LONGROPE_RUNS = {f"phi3-longrope-c{c}": ("phi3-longrope", c) for c in (256, 300, 512)}


def write_case(d: Path, name: str) -> Path:
    spec, meta, extra = CASES[name] if name in CASES else LONGROPE[name]
    return write_model(Path(d) / f"{name}.gguf", spec, meta=meta, extra=extra)


def prompts() -> list[list[int]]:
    rng = np.random.default_rng(2024)
    return [rng.integers(2, N_VOCAB, n).tolist() for n in (5, 9, 14)]
