"""Rotary position embedding on the device, in place: twin of kernels.rope.rope_apply.

The cos/sin table (n_tokens, n_dims // 2) depends only on positions: the host builds it with
kernels.rope.rope_cache (ggml's float32 theta recurrence, which must not be reassociated)
and uploads it once per forward; every layer's q and k reuse it. One thread per rotated pair.
"""

from numba import cuda

from kernels._jit import cuda_kernel
from kernels.cuda import launch


@cuda_kernel
def _rope_apply(x, cos, sin, n_dims, neox):
    """Rotate x (T, H, head_dim) in place by cos, sin (T, n_dims // 2); neox pairs (i, i + half)."""
    half = n_dims // 2
    n_heads = x.shape[1]
    idx = cuda.grid(1)
    if idx >= x.shape[0] * n_heads * half:
        return
    t = idx // (n_heads * half)
    h = (idx // half) % n_heads
    i = idx % half
    if neox:
        a, b = i, i + half
    else:
        a, b = 2 * i, 2 * i + 1
    x0, x1 = x[t, h, a], x[t, h, b]
    c, s = cos[t, i], sin[t, i]
    x[t, h, a] = x0 * c - x1 * s
    x[t, h, b] = x0 * s + x1 * c


def rope_apply(x, cos, sin, n_dims: int, neox: bool) -> None:
    """Rotate device x (T, H, head_dim) in place; elements past n_dims pass through."""
    grid, block = launch.elementwise(x.shape[0] * x.shape[1] * (n_dims // 2))
    _rope_apply[grid, block](x, cos, sin, n_dims, neox)
