"""Public matrix product: y = x @ W.T for any supported GGML weight type.

The caller owns every buffer: `Activations` holds the int8 copy of x (quantize once,
reuse for every matrix that reads the same x, e.g. Q, K and V), `out` holds y.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.packing import PackedMatrix, pack
from kernels.qmatmul import fmatmul, qmatmul, quantize_activations, quantize_activations_parallel

__all__ = ["Activations", "PackedMatrix", "matmul", "pack"]


class Activations:
    """Caller-owned int8 activations for up to `max_tokens` rows of length k."""

    def __init__(self, max_tokens: int, k: int):
        if k % 32:
            raise ValueError(f"activation length {k} is not a multiple of 32")
        self.k = k
        self.xq = np.zeros((max_tokens, k), np.int8)
        self.dx = np.zeros((max_tokens, k // 32), np.float32)
        self.sx = np.zeros((max_tokens, k // 16), np.float32)
        # qmatmul's per-lane buffer for widening packed codes during prefill
        self.wide = np.zeros((numba.get_num_threads(), k // 32 * 512 if max_tokens >= 8 else 0), np.uint8)
        self.x: np.ndarray | None = None
        self.n = 0

    def set(self, x: np.ndarray) -> "Activations":
        """Quantize x (T, k) float32 into this buffer; keeps a reference to x for float weights."""
        if x.ndim != 2 or x.shape[1] != self.k or x.shape[0] > self.xq.shape[0] or x.dtype != np.float32:
            raise ValueError(f"x must be float32 (<= {self.xq.shape[0]}, {self.k}), got {x.dtype} {x.shape}")
        n = x.shape[0]
        quant = quantize_activations_parallel if n >= 8 else quantize_activations  # ~1 us of pool start
        quant(self.xq[:n], self.dx[:n], self.sx[:n], x)
        self.x, self.n = x, n
        return self


def matmul(out: np.ndarray, x: np.ndarray | Activations, w: PackedMatrix) -> np.ndarray:
    """out (T, n) float32 <- x (T, k) @ W.T. x may be pre-quantized Activations."""
    act = x if isinstance(x, Activations) else Activations(x.shape[0], w.k).set(np.ascontiguousarray(x, np.float32))
    t = act.n
    if act.k != w.k or out.shape != (t, w.n) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"shapes: x ({t}, {act.k}), W ({w.n}, {w.k}), out {out.shape} {out.dtype}")
    if w.is_float:
        fmatmul(out, act.x, w.w, w.n, w.k)
    else:
        qmatmul(out, act.xq[:t], act.dx[:t], act.sx[:t], act.wide, w.qs, w.d, w.m, w.n, w.k, w.width, w.bs, w.sym)
    return out
