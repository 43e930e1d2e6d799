"""Quantized matrix products y = x @ W.T over PackedMatrix weights (see kernels.packing).

Activations are quantized to int8 per 32 values (as llama.cpp's Q8 activations), so each
32-weight block is an integer dot product (`simd.dpbusd`) followed by one float scaling:
  y[t, r] = sum_b  d[r, b] * dx[t, b] * sum_i q[r, i] * xq[t, i]  +  m[r, b] * sx[t, b]
with sx[t, b] = dx[t, b] * sum_i xq[t, i] (so offsets such as Q8_0's -128 d cancel exactly).
Parallel over 16-row groups (outputs); each weight block is unpacked once per tile of
four tokens, which is what makes prefill compute-bound rather than unpack-bound.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels._jit import inline_kernel, kernel, parallel_kernel
from kernels.simd import (
    dpbusd, fma_bcast, high_nibbles, load_f32x16, load_u8x64, low_nibbles, bcast_i32,
    scale_add, store_f32x16, store_u8x64, with_high_bits, zeros_f32, zeros_i32,
)

TILE = 4  # tokens per weight unpack


@inline_kernel
def _quantize_row(xq, dx, sx, x):
    """One row: xq (k,) int8, dx (k/32,), sx (k/16,) <- x (k,) float32, per-32 absmax scaling."""
    for b in range(x.shape[0] // 32):
        amax = np.float32(0.0)
        for i in range(32 * b, 32 * b + 32):
            amax = max(amax, abs(x[i]))
        d = amax / np.float32(127.0)
        inv = np.float32(1.0) / d if d > 0 else np.float32(0.0)
        dx[b] = d
        for h in range(2):
            s = np.int32(0)
            for i in range(32 * b + 16 * h, 32 * b + 16 * h + 16):
                q = np.int32(np.rint(x[i] * inv))
                xq[i] = q
                s += q
            sx[2 * b + h] = d * np.float32(s)


@kernel
def quantize_activations(xq, dx, sx, x):
    """xq (T, k) int8, dx (T, k/32), sx (T, k/16) = dx * sum(xq) per 16 <- x (T, k) float32."""
    for t in range(x.shape[0]):
        _quantize_row(xq[t], dx[t], sx[t], x[t])


@parallel_kernel
def quantize_activations_parallel(xq, dx, sx, x):
    """quantize_activations, rows split over threads (prefill; decode stays serial)."""
    for t in prange(x.shape[0]):
        _quantize_row(xq[t], dx[t], sx[t], x[t])


@inline_kernel
def _weights(qs, base, width):
    """Eight 64-byte chunks of unsigned codes for one (row group, 32-weight block).

    width 8: one byte per code; 4: nibbles; 5 or 6: nibbles plus a plane of the high
    1 or 2 bits at base + 256 (see kernels.packing)."""
    if width == 8:
        return (load_u8x64(qs, base), load_u8x64(qs, base + 64), load_u8x64(qs, base + 128), load_u8x64(qs, base + 192),
                load_u8x64(qs, base + 256), load_u8x64(qs, base + 320), load_u8x64(qs, base + 384), load_u8x64(qs, base + 448))
    v0, v1, v2, v3 = load_u8x64(qs, base), load_u8x64(qs, base + 64), load_u8x64(qs, base + 128), load_u8x64(qs, base + 192)
    w = (low_nibbles(v0), low_nibbles(v1), low_nibbles(v2), low_nibbles(v3),
         high_nibbles(v0), high_nibbles(v1), high_nibbles(v2), high_nibbles(v3))
    if width == 5:  # bit c: low nibble of chunk c; bit 4 + c: its high nibble
        h = load_u8x64(qs, base + 256)
        w = (with_high_bits(w[0], h, 0, 1), with_high_bits(w[1], h, 1, 1), with_high_bits(w[2], h, 2, 1),
             with_high_bits(w[3], h, 3, 1), with_high_bits(w[4], h, 4, 1), with_high_bits(w[5], h, 5, 1),
             with_high_bits(w[6], h, 6, 1), with_high_bits(w[7], h, 7, 1))
    elif width == 6:  # plane 0 for low nibbles, plane 1 for high ones; bits 2c, 2c+1 for chunk c
        h0, h1 = load_u8x64(qs, base + 256), load_u8x64(qs, base + 320)
        w = (with_high_bits(w[0], h0, 0, 3), with_high_bits(w[1], h0, 2, 3), with_high_bits(w[2], h0, 4, 3),
             with_high_bits(w[3], h0, 6, 3), with_high_bits(w[4], h1, 0, 3), with_high_bits(w[5], h1, 2, 3),
             with_high_bits(w[6], h1, 4, 3), with_high_bits(w[7], h1, 6, 3))
    return w


@inline_kernel
def _block(acc, w, xq, xo, dxv, sx, so, d0, m0, d1, m1, msc, bs16):
    """acc + one 32-weight block of 16 rows against the token whose codes start at xq[xo].

    The offset term is m * sx * msc (msc = sym for symmetric types, whose m is d)."""
    s0 = dpbusd(zeros_i32(), w[0], bcast_i32(xq, xo))
    s0 = dpbusd(s0, w[1], bcast_i32(xq, xo + 4))
    s0 = dpbusd(s0, w[2], bcast_i32(xq, xo + 8))
    s0 = dpbusd(s0, w[3], bcast_i32(xq, xo + 12))
    if bs16:  # a scale per 16 weights: two sums
        s1 = dpbusd(zeros_i32(), w[4], bcast_i32(xq, xo + 16))
        s1 = dpbusd(s1, w[5], bcast_i32(xq, xo + 20))
        s1 = dpbusd(s1, w[6], bcast_i32(xq, xo + 24))
        s1 = dpbusd(s1, w[7], bcast_i32(xq, xo + 28))
        acc = scale_add(acc, s0, d0, dxv, m0, sx[so] * msc)
        return scale_add(acc, s1, d1, dxv, m1, sx[so + 1] * msc)
    s0 = dpbusd(s0, w[4], bcast_i32(xq, xo + 16))
    s0 = dpbusd(s0, w[5], bcast_i32(xq, xo + 20))
    s0 = dpbusd(s0, w[6], bcast_i32(xq, xo + 24))
    s0 = dpbusd(s0, w[7], bcast_i32(xq, xo + 28))
    return scale_add(acc, s0, d0, dxv, m0, (sx[so] + sx[so + 1]) * msc)


@inline_kernel
def _store(y, t0, col, cnt, four, a0, a1, a2, a3):
    """Store a tile's accumulators (four tokens, or one) at y[t0.., col..]; the next t0."""
    store_f32x16(y[t0], col, a0, cnt)
    if not four:
        return t0 + 1
    store_f32x16(y[t0 + 1], col, a1, cnt)
    store_f32x16(y[t0 + 2], col, a2, cnt)
    store_f32x16(y[t0 + 3], col, a3, cnt)
    return t0 + 4


@parallel_kernel
def qmatmul(y, xq, dx, sx, wide, qs, d, m, n, k, width, bs, sym):
    """y (T, n) <- activations (xq (T, k), dx, sx from quantize_activations) @ packed W.T.

    sym != 0: a symmetric type, m = sym * d is not stored; m * sx is computed as d * (sym * sx).
    Prefill (8+ tokens) of packed codes first widens a row group's codes to bytes in a
    per-lane buffer, wide (lanes, k // 32 * 512) uint8 (24 KB for k = 1536), so unpacking
    is paid once per row group rather than once per tile of four tokens. prange runs over
    the lanes (one per thread), each owning a contiguous range of row groups.
    """
    n_tok = y.shape[0]
    nb = k // 32
    nbs = k // bs  # scales per row
    bs16 = bs == 16
    bb = 512 if width == 8 else 256 + 64 * (width - 4)  # bytes per (row group, block)
    msc = np.float32(sym) if sym != 0 else np.float32(1.0)
    widen = width != 8 and n_tok >= 8 and wide.shape[0] > 0 and wide.shape[1] >= nb * 512
    n_groups = (n + 15) // 16
    lanes = max(wide.shape[0], 1)
    for lane in prange(lanes):
        for g in range(lane * n_groups // lanes, (lane + 1) * n_groups // lanes):
            cnt = min(16, n - 16 * g)
            src, base0, step, wd = qs, g * nb * bb, bb, width
            if widen:
                src, base0, step, wd = wide[lane], 0, 512, 8
                for b in range(nb):
                    w = _weights(qs, (g * nb + b) * bb, width)
                    for c in range(8):
                        store_u8x64(src, b * 512 + c * 64, w[c])
            t0 = 0
            while t0 < n_tok:
                four = n_tok - t0 >= 4
                a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
                for b in range(nb):
                    w = _weights(src, base0 + b * step, wd)
                    so = 2 * b  # index of the block's first 16-weight half in sx
                    si = (g * nbs + (2 * b if bs16 else b)) * 16
                    d0 = load_f32x16(d, si)
                    d1 = load_f32x16(d, si + 16) if bs16 else d0
                    if sym != 0:
                        m0, m1 = d0, d1
                    else:
                        m0 = load_f32x16(m, si)
                        m1 = load_f32x16(m, si + 16) if bs16 else m0
                    a0 = _block(a0, w, xq[t0], 32 * b, dx[t0, b], sx[t0], so, d0, m0, d1, m1, msc, bs16)
                    if four:
                        a1 = _block(a1, w, xq[t0 + 1], 32 * b, dx[t0 + 1, b], sx[t0 + 1], so, d0, m0, d1, m1, msc, bs16)
                        a2 = _block(a2, w, xq[t0 + 2], 32 * b, dx[t0 + 2, b], sx[t0 + 2], so, d0, m0, d1, m1, msc, bs16)
                        a3 = _block(a3, w, xq[t0 + 3], 32 * b, dx[t0 + 3, b], sx[t0 + 3], so, d0, m0, d1, m1, msc, bs16)
                t0 = _store(y, t0, 16 * g, cnt, four, a0, a1, a2, a3)


@parallel_kernel
def fmatmul(y, x, w, n, k):
    """y (T, n) <- x (T, k) float32 @ W.T, W in the float layout (G, k, 16), any float dtype."""
    n_tok = y.shape[0]
    for g in prange((n + 15) // 16):
        cnt = min(16, n - 16 * g)
        t0 = 0
        while t0 < n_tok:
            four = n_tok - t0 >= 4
            a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
            for i in range(k):
                wv = load_f32x16(w, (g * k + i) * 16)
                a0 = fma_bcast(a0, wv, x[t0], i)
                if four:
                    a1 = fma_bcast(a1, wv, x[t0 + 1], i)
                    a2 = fma_bcast(a2, wv, x[t0 + 2], i)
                    a3 = fma_bcast(a3, wv, x[t0 + 3], i)
            t0 = _store(y, t0, 16 * g, cnt, four, a0, a1, a2, a3)
