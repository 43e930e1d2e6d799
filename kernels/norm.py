"""RMSNorm, as llama.cpp's ggml_rms_norm followed by ggml_mul with the weight.

out = x / sqrt(mean(x^2) + eps) * w, per row. Rows may be tokens (x: (n_tokens, n_embd)) or,
for Gemma3/Qwen3's per-head Q/K norm, (token, head) pairs: pass q.reshape(-1, head_dim)
with w of length head_dim.
"""

import numpy as np
from numba import prange

from ._jit import kernel, parallel_kernel
from .activation import same


@kernel
def rms_norm_row(out, x, w, eps):
    """out (n,) = x (n,) / sqrt(mean(x^2) + eps) * w (n,); out may be x."""
    n = x.shape[0]
    # Sum of squares in float64 like llama.cpp (ggml_float): exact enough for any n,
    # and the widening still vectorizes.
    ss = 0.0
    for i in range(n):
        v = np.float64(x[i])
        ss += v * v
    scale = np.float32(1.0 / np.sqrt(ss / n + eps))
    # In place gets its own loop: the two-array loop would fail LLVM's overlap check and run scalar.
    if same(out, x):
        for i in range(n):
            out[i] = out[i] * scale * w[i]
    else:
        for i in range(n):
            out[i] = x[i] * scale * w[i]


@parallel_kernel
def rms_norm(out, x, w, eps):
    """out (n_rows, n) = rms_norm of each row of x (n_rows, n), times w (n,); out may be x."""
    for r in prange(x.shape[0]):  # rows are independent outputs
        rms_norm_row(out[r], x[r], w, eps)
