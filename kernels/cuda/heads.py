"""Q/K/V heads out of the fused projection, in one launch: the CPU layer's split, per-head
Q/K RMSNorm, RoPE and KV-cache store (kernels.norm, kernels.rope and the cache writes in
service/model/layer.py), for every sequence of the batch at once.

One block per (token, head slot): slots 0 .. n_head-1 are query heads, written to q; slots
n_head .. n_head+n_kv-1 are kv heads, whose rotated key and plain value go straight to
their sequence's cache at the token's position. Why fused: decode on a GPU is bound by
launch count long before bandwidth for models this small; this replaces 7 + 2 x sequences
launches per layer with one.
"""

import math

import numpy as np
from numba import cuda

from kernels._jit import cuda_kernel
from kernels.cuda import launch
from kernels.cuda.launch import MAX_HEAD_DIM, ROW_THREADS
from kernels.cuda.reduce import block_sum


@cuda_kernel
def _heads(q, k_cache, v_cache, qkv, seq, pos, cos, sin, q_norm, k_norm, eps, n_dims, neox, n_kv, hd):
    """q (T, n_head, hd) and the caches (n_seq, n_kv, n_ctx, hd) at (seq[t], pos[t]) from qkv (T, (n_head + 2 n_kv) hd)."""
    buf = cuda.shared.array(ROW_THREADS, np.float32)
    v = cuda.shared.array(MAX_HEAD_DIM, np.float32)  # the head, normed, before rotation
    n_head = q.shape[1]
    slots = n_head + n_kv
    t, s = cuda.blockIdx.x // slots, cuda.blockIdx.x % slots
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    is_q = s < n_head
    base = s * hd  # q heads, then k heads follow q in qkv: slot s starts at s * hd either way
    w = q_norm if is_q else k_norm
    scale = np.float32(1.0)
    if w.shape[0] > 0:
        ss = np.float32(0.0)
        for d in range(tid, hd, nt):
            ss += qkv[t, base + d] * qkv[t, base + d]
        ss = block_sum(buf, ss)
        scale = np.float32(1.0) / math.sqrt(ss / np.float32(hd) + eps)
    for d in range(tid, hd, nt):
        v[d] = qkv[t, base + d] * scale * w[d] if w.shape[0] > 0 else qkv[t, base + d]
    cuda.syncthreads()
    half = n_dims // 2
    sq, p = seq[t], pos[t]
    g = s - n_head
    for d in range(tid, hd, nt):
        if d < n_dims:  # rotate the pair this element belongs to: (i, i + half) or (2i, 2i + 1)
            if neox:
                i = d % half
                a, b = i, i + half
            else:
                i = d // 2
                a, b = 2 * i, 2 * i + 1
            c, sn = cos[t, i], sin[t, i]
            r = v[a] * c - v[b] * sn if d == a else v[a] * sn + v[b] * c
        else:
            r = v[d]
        if is_q:
            q[t, s, d] = r
        else:
            k_cache[sq, g, p, d] = r
            v_cache[sq, g, p, d] = qkv[t, (n_head + n_kv + g) * hd + d]


def heads(q, k_cache, v_cache, qkv, seq, pos, cos, sin, q_norm, k_norm, eps: float, n_dims: int,
          neox: bool) -> None:
    """Split qkv (T, (n_head + 2 n_kv) head_dim) into q (T, n_head, head_dim) and the caches
    (n_seq, n_kv, n_ctx, head_dim) at each token's (seq, pos); Q/K norms when their weights
    have entries, then RoPE over the first n_dims of each head. Device arrays."""
    n_tok, n_head, hd = q.shape
    n_kv = k_cache.shape[1]
    if hd > MAX_HEAD_DIM or qkv.shape[1] != (n_head + 2 * n_kv) * hd:
        raise ValueError("heads: head_dim above MAX_HEAD_DIM or qkv width disagrees with the heads")
    grid, block = launch.rows(n_tok * (n_head + n_kv))
    _heads[grid, block](q, k_cache, v_cache, qkv, seq, pos, cos, sin, q_norm, k_norm, np.float32(eps), n_dims,
                        neox, n_kv, hd)
