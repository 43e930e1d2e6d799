"""RMSNorm on the device: twin of kernels.norm (ggml_rms_norm then ggml_mul by the weight).

out = x / sqrt(mean(x^2) + eps) * w per row; one block per row, the sum of squares meets in
shared memory. Rows may be (token, head) pairs for Q/K norms: pass x reshaped (-1, head_dim).
The CPU twin sums in float64; here float32 partial sums per thread, then a tree: the
difference is a few ulps for rows of a few thousand elements.
"""

import math

import numpy as np
from numba import cuda

from kernels._jit import cuda_kernel
from kernels.cuda import launch
from kernels.cuda.launch import ROW_THREADS
from kernels.cuda.reduce import block_sum


@cuda_kernel
def _rms_norm(out, x, w, eps):
    """out (R, n) = rms_norm(x (R, n)) * w (n,); block per row; out may be x."""
    buf = cuda.shared.array(ROW_THREADS, np.float32)
    r, t = cuda.blockIdx.x, cuda.threadIdx.x
    n = x.shape[1]
    ss = np.float32(0.0)
    for i in range(t, n, cuda.blockDim.x):
        v = x[r, i]
        ss += v * v
    ss = block_sum(buf, ss)
    scale = np.float32(1.0) / math.sqrt(ss / np.float32(n) + np.float32(eps))
    for i in range(t, n, cuda.blockDim.x):
        out[r, i] = x[r, i] * scale * w[i]


def rms_norm(out, x, w, eps: float) -> None:
    """out (R, n) = rms_norm of each row of x (R, n) times w (n,), device arrays; out may be x."""
    grid, block = launch.rows(x.shape[0])
    _rms_norm[grid, block](out, x, w, np.float32(eps))


@cuda_kernel
def _residual(out, x, h, w_post, w_next, eps):
    """Per row: h = rms_norm(h) * w_post (if w_post has entries); x += h; out = rms_norm(x) * w_next (if any).

    The junction between two blocks of a layer in one launch: the residual add, the optional
    post-norm before it (gemma3) and the next block's input norm after it. Each thread
    updates and rereads only its own elements, so the two reductions need no other barrier.
    """
    buf = cuda.shared.array(ROW_THREADS, np.float32)
    r, t, nt = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    n = x.shape[1]
    scale = np.float32(1.0)
    if w_post.shape[0] > 0:
        ss = np.float32(0.0)
        for i in range(t, n, nt):
            ss += h[r, i] * h[r, i]
        ss = block_sum(buf, ss)
        scale = np.float32(1.0) / math.sqrt(ss / np.float32(n) + eps)
    ss = np.float32(0.0)
    for i in range(t, n, nt):
        hv = h[r, i] * scale * w_post[i] if w_post.shape[0] > 0 else h[r, i]
        v = x[r, i] + hv
        x[r, i] = v
        ss += v * v
    if w_next.shape[0] > 0:
        ss = block_sum(buf, ss)
        scale = np.float32(1.0) / math.sqrt(ss / np.float32(n) + eps)
        for i in range(t, n, nt):
            out[r, i] = x[r, i] * scale * w_next[i]


def residual(out, x, h, w_post, w_next, eps: float) -> None:
    """x (R, n) += rms_norm(h) * w_post (or h when w_post is empty); then out = rms_norm(x) * w_next
    unless w_next is empty. out may be h (the next block's input overwrites the spent output)."""
    grid, block = launch.rows(x.shape[0])
    _residual[grid, block](out, x, h, w_post, w_next, np.float32(eps))
