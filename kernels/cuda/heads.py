"""Q/K/V heads out of the fused projection, in one launch: the CPU layer's split, per-head
Q/K RMSNorm, RoPE and KV-cache store (kernels.norm, kernels.rope and the cache writes in
service/model/layer.py), for every sequence of the batch at once.

One block per (token, head slot): slots 0 .. n_head-1 are query heads, written to q; slots
n_head .. n_head+n_kv-1 are kv heads, whose rotated key and plain value go straight to
their sequence's cache at the token's position. Why fused: decode on a GPU is bound by
launch count long before bandwidth for models this small; this replaces 7 + 2 x sequences
launches per layer with one. The cache store writes every cache type (kernels.cuda.kv): float
types element by element, block types a 32-value block per thread once the head is in shared
memory. An exact kernel, so that the block quantizers round as the CPU's do.
"""

import math

import numpy as np
from numba import cuda

from kernels import kv_types as kt
from kernels.hadamard import rot_sizes
from kernels._jit import cuda_exact_kernel
from kernels.cuda import launch
from kernels.cuda.exact import mul
from kernels.cuda.launch import MAX_HEAD_DIM, ROW_THREADS
from kernels.cuda.hadamard import fwht_shared, scale_of
from kernels.cuda.kv import is_block, put_block, put_elem
from kernels.cuda.reduce import block_sum


@cuda_exact_kernel
def _heads(q, k_cache, v_cache, k_half, v_half, tk, tv, rot_k, rot_v, scale_k, scale_v, qkv, seq, pos, cos, sin,
           q_norm, k_norm, eps, n_dims, neox, n_kv, hd):
    """q (T, n_head, hd) and the caches (n_seq, n_kv, n_ctx, width) of types tk, tv at (seq[t], pos[t]) from
    qkv (T, (n_head + 2 n_kv) hd); rot_k, rot_v: kernels.hadamard's rotations (0: none), scale_k, scale_v
    their 1 / sqrt(n)."""
    buf = cuda.shared.array(ROW_THREADS, np.float32)
    v = cuda.shared.array(MAX_HEAD_DIM, np.float32)  # the head, normed, before rotation
    xk = cuda.shared.array(MAX_HEAD_DIM, np.float32)  # a kv slot's rotated key and its value, for block types
    xv = cuda.shared.array(MAX_HEAD_DIM, np.float32)
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
            ss += mul(qkv[t, base + d], qkv[t, base + d])  # exact kernel: no FMA (the CPU rounds each product)
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
            r = mul(v[a], c) - mul(v[b], sn) if d == a else mul(v[a], sn) + mul(v[b], c)
        else:
            r = v[d]
        if is_q:
            if rot_k > 0:
                xk[d] = r
            else:
                q[t, s, d] = r
        else:
            val = qkv[t, (n_head + n_kv + g) * hd + d]
            xk[d] = r
            xv[d] = val
            if not is_block(tk):
                put_elem(k_cache[sq, g], p, d, r, tk)
            if not is_block(tv):
                put_elem(v_cache[sq, g], p, d, val, tv)
    if rot_k > 0:  # every branch below is taken by the whole block
        fwht_shared(xk, hd, rot_k, scale_k)
        if is_q:
            for d in range(tid, hd, nt):
                q[t, s, d] = xk[d]
    if not is_q and rot_v > 0:
        fwht_shared(xv, hd, rot_v, scale_v)
    if not is_q and (is_block(tk) or is_block(tv)):
        cuda.syncthreads()
        for b in range(tid, hd // 32, nt):
            if is_block(tk):
                put_block(k_cache[sq, g], k_half[sq, g], p, xk, b, tk)
            if is_block(tv):
                put_block(v_cache[sq, g], v_half[sq, g], p, xv, b, tv)


def heads(q, k_cache, v_cache, qkv, seq, pos, cos, sin, q_norm, k_norm, eps: float, n_dims: int,
          neox: bool, types: tuple[int, int] = (kt.F32, kt.F32), halves: tuple = (None, None)) -> None:
    """Split qkv (T, (n_head + 2 n_kv) head_dim) into q (T, n_head, head_dim) and the caches
    (n_seq, n_kv, n_ctx, width) of cache types `types` at each token's (seq, pos); Q/K norms when
    their weights have entries, then RoPE over the first n_dims of each head. Device arrays;
    halves: the float16 views of quantized caches (kernels.cuda.kv), None for the others."""
    n_tok, n_head, hd = q.shape
    n_kv = k_cache.shape[1]
    if hd > MAX_HEAD_DIM or qkv.shape[1] != (n_head + 2 * n_kv) * hd:
        raise ValueError("heads: head_dim above MAX_HEAD_DIM or qkv width disagrees with the heads")
    kh = k_cache if halves[0] is None else halves[0]
    vh = v_cache if halves[1] is None else halves[1]
    rot_k, rot_v = rot_sizes(int(types[0]), int(types[1]), hd)
    grid, block = launch.rows(n_tok * (n_head + n_kv))
    _heads[grid, block](q, k_cache, v_cache, kh, vh, int(types[0]), int(types[1]), rot_k, rot_v,
                        scale_of(max(rot_k, 1)), scale_of(max(rot_v, 1)), qkv, seq, pos, cos, sin, q_norm, k_norm,
                        np.float32(eps), n_dims, neox, n_kv, hd)
