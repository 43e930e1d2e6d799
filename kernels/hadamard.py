"""llama.cpp's attention rotation for quantized KV caches (llama-kv-cache.cpp, attn_rot_k / attn_rot_v).

When the K cache type is a block type and head_dim % 64 == 0, llama.cpp multiplies every
query and key head, after RoPE, by an orthonormal Walsh-Hadamard matrix H (Sylvester order,
entries +-1/sqrt(n)), in chunks of n consecutive values, n the largest power of two dividing
head_dim: scores are unchanged (H is orthonormal), but an outlier's weight is spread over the
chunk before the keys are quantized. When the V cache type is a block type (same condition),
values get H with n = 64 before they are stored, and the attention output H again after
(H H = I). Sizes: rot_sizes(); 0 means no rotation. A context shift turns keys back with H
before the RoPE correction and forward again after.

fwht_rows applies H in place with the fast transform (n log2 n butterflies, then the scale).
"""

from __future__ import annotations

import numpy as np

from kernels import kv_types as kt
from kernels._jit import kernel


@kernel
def rot_sizes(tk, tv, head_dim):
    """(n_k, n_v): the rotation chunk of keys (and queries) and of values; 0: none."""
    n_k = 0
    n_v = 0
    if head_dim % 64 == 0:
        if tk != kt.F32 and tk != kt.F16 and tk != kt.BF16:
            n_k = 64
            while head_dim % (2 * n_k) == 0:
                n_k *= 2
        if tv != kt.F32 and tv != kt.F16 and tv != kt.BF16:
            n_v = 64
    return n_k, n_v


@kernel
def fwht_rows(x, n):
    """x (rows, head_dim) float32, C-contiguous rows: every chunk of n values <- H_n chunk (n a power of 2)."""
    scale = np.float32(1.0 / np.sqrt(n))
    for r in range(x.shape[0]):
        row = x[r]
        for c in range(0, row.shape[0], n):
            v = row[c : c + n]
            h = 1
            while h < n:
                for i in range(0, n, 2 * h):
                    a = v[i : i + h]
                    b = v[i + h : i + 2 * h]
                    for j in range(h):
                        s = a[j] + b[j]
                        b[j] = a[j] - b[j]
                        a[j] = s
                h *= 2
            for j in range(n):
                v[j] *= scale
