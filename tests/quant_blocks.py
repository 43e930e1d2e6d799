"""Random GGML blocks for tests: real quantization where gguf can do it, else random bytes
with realistic float16 scales (random scale bytes would give NaN/inf and absurd values)."""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import quantize

# Byte offsets of the float16 scale fields (d, and dmin / m) inside one block.
F16_FIELDS = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,), T.IQ4_NL: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,), T.IQ4_XS: (0,),
}
GGUF_QUANTIZES = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0)  # types gguf.quants.quantize can produce
QUANTIZED = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS)
FLOATS = (T.F32, T.F16, T.BF16)


def random_matrix(qtype: T, n: int, k: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """GGUF bytes (n, row_bytes) uint8 of an (n, k) matrix of type qtype."""
    bsz, tsz = GGML_QUANT_SIZES[qtype]
    vals = (rng.standard_normal((n, k)) * scale).astype(np.float32)
    if qtype == T.F32:
        return vals.view(np.uint8)
    if qtype == T.F16:
        return vals.astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        return (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    if qtype in GGUF_QUANTIZES:
        return quantize(vals, qtype)
    blocks = rng.integers(0, 256, (n * (k // bsz), tsz), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        d = (rng.uniform(0.5, 2.0, blocks.shape[0]) * 1e-2 * scale).astype(np.float16)
        blocks[:, off : off + 2] = d.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(n, -1)
