"""LoRA: the low-rank update each adapter adds to a matrix product, per token.

For a weight W (n, k) with adapters j = 0..J-1, each a pair A_j (r, k), B_j (n, r):

    y[t] = x[t] @ W.T + sum_j s[t, j] * (x[t] @ A_j.T) @ B_j.T

s[t, j] is token t's scale for adapter j (its sequence's request decides it), so tokens of
sequences with different adapters share one batch. B_j arrives pre-multiplied by alpha / r
(llama.cpp's scaling, applied once at load), and ranks are zero-padded to the largest, so one
call covers every adapter. A token whose scale is 0 costs nothing; an adapter that does not
touch W has all-zero A_j and B_j.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels._jit import parallel_kernel


@parallel_kernel
def lora_add(out, x, a, b, scale, ax):
    """out (T, n) += the adapters' updates of x (T, k).

    a (J, r, k), b (J, n, r) float32; scale (T, J) float32; ax (T, r) float32 scratch (caller-owned)."""
    n_tok, n_ad, r = x.shape[0], a.shape[0], a.shape[1]
    n = b.shape[1]
    for j in range(n_ad):
        live = False
        for t in range(n_tok):
            s = scale[t, j]
            if s == 0.0:
                continue
            live = True
            for i in range(r):
                acc = np.float32(0.0)
                for c in range(x.shape[1]):
                    acc += a[j, i, c] * x[t, c]
                ax[t, i] = acc * s
        if not live:
            continue
        for o in prange(n):
            for t in range(n_tok):
                if scale[t, j] == 0.0:
                    continue
                acc = np.float32(0.0)
                for i in range(r):
                    acc += b[j, o, i] * ax[t, i]
                out[t, o] += acc


def lora_add_reference(out: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """NumPy oracle of lora_add (float64 accumulation)."""
    for j in range(a.shape[0]):
        upd = (x.astype(np.float64) @ a[j].T.astype(np.float64)) @ b[j].T.astype(np.float64)
        out += (scale[:, j : j + 1].astype(np.float64) * upd).astype(np.float32)
    return out
