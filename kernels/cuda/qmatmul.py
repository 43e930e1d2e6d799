"""Quantized matrix products on the device: y (T, n) = x (T, k) @ W.T, W a DeviceMatrix.

Decode (T <= GEMV_MAX_TOKENS): one warp of lanes per output row walks the row's 32-bit code
words with a stride of the lane count, so a warp reads consecutive words; a word holds 8
(4-bit) or 4 (8-bit) weights of one sub-block, so each lane sums q * x and x over the word
and applies the sub-block's scale and offset once: s * sum(q x) + o * sum(x). Each lane
keeps one partial sum per token in registers, and the lanes' sums meet in shared memory. The weights are read
once for all T tokens, which is what matters when decode is bound by memory bandwidth.
Prefill (larger T): TILE x TILE outputs per block; each K slice of TILE_K weights is
dequantized once into shared memory and reused by TILE tokens, and the matching slice of x
by TILE rows. Twin of kernels.qmatmul / kernels.matmul (which quantize x to int8; here x
stays float32, so results agree to float rounding, not bit for bit).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from kernels._jit import cuda_device, cuda_kernel
from kernels.cuda import launch
from kernels.cuda.launch import GEMV_LANES, GEMV_MAX_TOKENS, GEMV_ROWS, TILE, TILE_K
from kernels.cuda.packing import KIND_FLOAT, KIND_NIBBLE, DeviceMatrix

_ROW = TILE_K + 1  # shared tile row: +1 column so a warp reading down a column spreads over banks


@cuda_device
def weight(codes, scale, offset, w, kind, bs, row, e):
    """W[row, e] as float32 from any layout (kind: float, nibble or byte codes)."""
    if kind == KIND_FLOAT:
        return w[row, e]
    # int64 on both branches: mixed integer branches could unify as float64.
    if kind == KIND_NIBBLE:
        q = (np.int64(codes[row, e >> 3]) >> (4 * (e & 7))) & 15
    else:
        q = (np.int64(codes[row, e >> 2]) >> (8 * (e & 3))) & 255
    j = e // bs
    return scale[row, j] * np.float32(q) + offset[row, j]


@cuda_device
def _word(acc, x, n_tok, word, e, scale, offset, row, bs, per, bits, mask):
    """acc[t] += W[row, e:e+per] . x[t, e:e+per] for one code word (constant per/bits/mask: unrolled)."""
    s, o = scale[row, e // bs], offset[row, e // bs]
    for t in range(n_tok):
        qx = np.float32(0.0)
        sx = np.float32(0.0)
        for m in range(per):
            xv = x[t, e + m]
            qx += np.float32((word >> (bits * m)) & mask) * xv
            sx += xv
        acc[t] += s * qx + o * sx


@cuda_kernel
def gemv(y, x, codes, scale, offset, w, kind, bs, n, k):
    """y (T, n) = x (T, k) @ W.T for T <= GEMV_MAX_TOKENS; block (lanes, rows), one row per y-thread."""
    lane, r = cuda.threadIdx.x, cuda.threadIdx.y
    lanes = cuda.blockDim.x
    row = cuda.blockIdx.x * cuda.blockDim.y + r
    n_tok = x.shape[0]
    acc = cuda.local.array(GEMV_MAX_TOKENS, np.float32)
    buf = cuda.shared.array((GEMV_ROWS, GEMV_LANES), np.float32)
    for t in range(n_tok):
        acc[t] = 0.0
    if row < n:
        if kind == KIND_FLOAT:
            for e in range(lane, k, lanes):
                we = w[row, e]
                for t in range(n_tok):
                    acc[t] += we * x[t, e]
        elif kind == KIND_NIBBLE:
            for i in range(lane, k >> 3, lanes):
                _word(acc, x, n_tok, np.int64(codes[row, i]), i * 8, scale, offset, row, bs, 8, 4, 15)
        else:
            for i in range(lane, k >> 2, lanes):
                _word(acc, x, n_tok, np.int64(codes[row, i]), i * 4, scale, offset, row, bs, 4, 8, 255)
    for t in range(n_tok):  # reduce over the lanes of each row; every thread reaches the barriers
        buf[r, lane] = acc[t]
        cuda.syncthreads()
        s = lanes // 2
        while s > 0:
            if lane < s:
                buf[r, lane] += buf[r, lane + s]
            cuda.syncthreads()
            s //= 2
        if lane == 0 and row < n:
            y[t, row] = buf[r, 0]
        cuda.syncthreads()


@cuda_kernel
def gemm(y, x, codes, scale, offset, w, kind, bs, n, k):
    """y (T, n) = x (T, k) @ W.T; block (TILE, TILE) computes rows bx*TILE.. for tokens by*TILE..."""
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y  # tx: row in the tile, ty: token in the tile
    row0, tok0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    n_tok = x.shape[0]
    ws = cuda.shared.array((TILE, _ROW), np.float32)
    xs = cuda.shared.array((TILE, _ROW), np.float32)
    tid = ty * TILE + tx
    acc = np.float32(0.0)
    for k0 in range(0, k, TILE_K):
        for idx in range(tid, TILE * TILE_K, TILE * TILE):
            i, c = idx // TILE_K, idx % TILE_K
            e = k0 + c
            inside = e < k
            zero = np.float32(0.0)
            ws[i, c] = weight(codes, scale, offset, w, kind, bs, row0 + i, e) if inside and row0 + i < n else zero
            xs[i, c] = x[tok0 + i, e] if inside and tok0 + i < n_tok else zero
        cuda.syncthreads()
        for c in range(TILE_K):
            acc += ws[tx, c] * xs[ty, c]
        cuda.syncthreads()
    if row0 + tx < n and tok0 + ty < n_tok:
        y[tok0 + ty, row0 + tx] = acc


def matmul(y, x, m: DeviceMatrix) -> None:
    """y (T, n) = x (T, k) @ W.T on the device; y, x device float32 (y may be a column slice)."""
    n_tok = x.shape[0]
    args = (m.codes, m.scale, m.offset, m.w, m.kind, m.bs, m.n, m.k)
    if n_tok > GEMV_MAX_TOKENS:
        grid, block = launch.gemm(n_tok, m.n)
        gemm[grid, block](y, x, *args)
        return
    grid, block = launch.gemv(m.n)
    gemv[grid, block](y, x, *args)
