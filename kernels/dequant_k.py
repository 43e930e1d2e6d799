"""Bit-exact dequantization kernels for the 256-weight super-block formats.

Covers Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS. Each kernel repeats gguf.quants' numpy
float32 operations in the same order: the sub-block scale is formed first in float32
(d * sc, dmin * m), then multiplied by the quant, then the min is subtracted.

Conventions: outputs first, then inputs, then sizes: out (n_blocks, 256) float32, blocks
(n_blocks, type_size) uint8, both C-contiguous; prange runs over super-blocks (outputs).
The size n16 (always 16; n32 = 32 for Q4_K, Q5_K) is the inner trip count, passed at run
time so that LLVM keeps (and vectorizes) the loop instead of unrolling it into scalar code;
see dequant_legacy.
Byte layouts follow gguf.quants.
"""

import numpy as np
from numba import prange

from kernels._jit import exact_kernel, parallel_exact_kernel
from kernels.dequant_legacy import f16_at


@exact_kernel
def _k_scale_min(blocks, b, j):
    """(scale, min) of sub-block j (0..7): 12 packed 6-bit pairs at blocks[b, 4:16] (Q4_K, Q5_K)."""
    if j < 4:
        return np.int32(blocks[b, 4 + j]) & 63, np.int32(blocks[b, 8 + j]) & 63
    lo = np.int32(blocks[b, 8 + j])  # byte 8 + k holds the low 4 bits of scale and min k + 4
    sc = (lo & 15) | ((np.int32(blocks[b, j]) >> 6) << 4)
    return sc, (lo >> 4) | ((np.int32(blocks[b, 4 + j]) >> 6) << 4)


@parallel_exact_kernel
def dequant_q2_k(out, blocks, n16):
    """Q2_K: out = (d * sc_j) * q2 - (dmin * m_j); blocks (n, 84) = 16 sc | 64 qs | d | dmin."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 80)
        dmin = f16_at(blocks, b, 82)
        for half in range(2):  # weight half*128 + s*32 + l is byte qs[half*32 + l] >> 2s
            for s in range(4):
                o = 128 * half + 32 * s  # first weight; sub-blocks j (16 weights), j + 1
                q = 16 + 32 * half  # its quant bytes, after the 16 scale bytes
                j = 8 * half + 2 * s
                s0 = np.int32(blocks[b, j])  # low nibble: scale, high nibble: min
                s1 = np.int32(blocks[b, j + 1])
                dl0 = d * np.float32(s0 & 15)
                ml0 = dmin * np.float32(s0 >> 4)
                dl1 = d * np.float32(s1 & 15)
                ml1 = dmin * np.float32(s1 >> 4)
                for l in range(n16):
                    q0 = np.int32((np.int32(blocks[b, q + l]) >> (2 * s)) & 3)
                    q1 = np.int32((np.int32(blocks[b, q + 16 + l]) >> (2 * s)) & 3)
                    out[b, o + l] = dl0 * np.float32(q0) - ml0
                    out[b, o + 16 + l] = dl1 * np.float32(q1) - ml1


@exact_kernel
def _q3_scale(blocks, b, j):
    """Signed 6-bit scale j (0..15) of Q3_K: low 4 bits in bytes 96..103, high 2 in 104..107."""
    if j < 8:
        lo = np.int32(blocks[b, 96 + j]) & 15
    else:
        lo = np.int32(blocks[b, 88 + j]) >> 4
    hi = (np.int32(blocks[b, 104 + (j & 3)]) >> (2 * (j >> 2))) & 3
    return (lo | (hi << 4)) - 32


@parallel_exact_kernel
def dequant_q3_k(out, blocks, n16):
    """Q3_K: out = (d * sc_j) * (q2 - 4 * !hbit); blocks (n, 110) = 32 hmask | 64 qs | 12 sc | d."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 108)
        for half in range(2):  # weight half*128 + s*32 + l: low bits qs[half*32 + l] >> 2s
            for s in range(4):
                o = 128 * half + 32 * s
                q = 32 + 32 * half
                k = 4 * half + s  # bit k of hmask[l] is the high bit of weight 32k + l
                dl0 = d * np.float32(_q3_scale(blocks, b, 8 * half + 2 * s))
                dl1 = d * np.float32(_q3_scale(blocks, b, 8 * half + 2 * s + 1))
                for l in range(n16):
                    lo0 = (np.int32(blocks[b, q + l]) >> (2 * s)) & 3
                    lo1 = (np.int32(blocks[b, q + 16 + l]) >> (2 * s)) & 3
                    h0 = ((np.int32(blocks[b, l]) >> k) & 1) ^ 1  # a set bit means no -4
                    h1 = ((np.int32(blocks[b, 16 + l]) >> k) & 1) ^ 1
                    out[b, o + l] = dl0 * np.float32(np.int32(lo0 - (h0 << 2)))
                    out[b, o + 16 + l] = dl1 * np.float32(np.int32(lo1 - (h1 << 2)))


@exact_kernel
def _k_sub_scales(blocks, b, j, d, dmin):
    """(d * scale_j, dmin * min_j) in float32, as gguf forms them, for Q4_K / Q5_K sub-block j."""
    sc, m = _k_scale_min(blocks, b, j)
    return d * np.float32(sc), dmin * np.float32(m)


@parallel_exact_kernel
def dequant_q4_k(out, blocks, n32):
    """Q4_K: out = (d * sc_j) * q4 - (dmin * m_j); blocks (n, 144) = d | dmin | 12 sc | 128 qs."""
    n32 = min(n32, 32)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        dmin = f16_at(blocks, b, 2)
        d0, m0 = _k_sub_scales(blocks, b, 0, d, dmin)
        d1, m1 = _k_sub_scales(blocks, b, 1, d, dmin)
        d2, m2 = _k_sub_scales(blocks, b, 2, d, dmin)
        d3, m3 = _k_sub_scales(blocks, b, 3, d, dmin)
        d4, m4 = _k_sub_scales(blocks, b, 4, d, dmin)
        d5, m5 = _k_sub_scales(blocks, b, 5, d, dmin)
        d6, m6 = _k_sub_scales(blocks, b, 6, d, dmin)
        d7, m7 = _k_sub_scales(blocks, b, 7, d, dmin)
        # One loop for all 8 sub-blocks keeps every shift constant (32-bit lanes) and pays the
        # vectorizer's overlap check once: qs byte 32c + l holds weight 64c + l (low nibble,
        # sub-block 2c) and weight 64c + 32 + l (high nibble, sub-block 2c + 1).
        for l in range(n32):
            v0 = np.int32(blocks[b, 16 + l])
            v1 = np.int32(blocks[b, 48 + l])
            v2 = np.int32(blocks[b, 80 + l])
            v3 = np.int32(blocks[b, 112 + l])
            out[b, l] = d0 * np.float32(np.int32(v0 & 15)) - m0
            out[b, 32 + l] = d1 * np.float32(np.int32(v0 >> 4)) - m1
            out[b, 64 + l] = d2 * np.float32(np.int32(v1 & 15)) - m2
            out[b, 96 + l] = d3 * np.float32(np.int32(v1 >> 4)) - m3
            out[b, 128 + l] = d4 * np.float32(np.int32(v2 & 15)) - m4
            out[b, 160 + l] = d5 * np.float32(np.int32(v2 >> 4)) - m5
            out[b, 192 + l] = d6 * np.float32(np.int32(v3 & 15)) - m6
            out[b, 224 + l] = d7 * np.float32(np.int32(v3 >> 4)) - m7


@parallel_exact_kernel
def dequant_q5_k(out, blocks, n32):
    """Q5_K: out = (d * sc_j) * q5 - (dmin * m_j); blocks (n, 176) = d|dmin|12 sc|32 qh|128 qs."""
    n32 = min(n32, 32)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        dmin = f16_at(blocks, b, 2)
        d0, m0 = _k_sub_scales(blocks, b, 0, d, dmin)
        d1, m1 = _k_sub_scales(blocks, b, 1, d, dmin)
        d2, m2 = _k_sub_scales(blocks, b, 2, d, dmin)
        d3, m3 = _k_sub_scales(blocks, b, 3, d, dmin)
        d4, m4 = _k_sub_scales(blocks, b, 4, d, dmin)
        d5, m5 = _k_sub_scales(blocks, b, 5, d, dmin)
        d6, m6 = _k_sub_scales(blocks, b, 6, d, dmin)
        d7, m7 = _k_sub_scales(blocks, b, 7, d, dmin)
        # As Q4_K, plus bit j of qh[l] (bytes 16..47) as bit 4 of weight 32j + l; constant
        # shifts here, since a loop-variable shift would widen the lanes to 64 bits.
        for l in range(n32):
            h = np.int32(blocks[b, 16 + l]) << 4  # bit j -> bit j + 4
            v0 = np.int32(blocks[b, 48 + l])
            v1 = np.int32(blocks[b, 80 + l])
            v2 = np.int32(blocks[b, 112 + l])
            v3 = np.int32(blocks[b, 144 + l])
            out[b, l] = d0 * np.float32(np.int32((v0 & 15) | (h & 16))) - m0
            out[b, 32 + l] = d1 * np.float32(np.int32((v0 >> 4) | ((h >> 1) & 16))) - m1
            out[b, 64 + l] = d2 * np.float32(np.int32((v1 & 15) | ((h >> 2) & 16))) - m2
            out[b, 96 + l] = d3 * np.float32(np.int32((v1 >> 4) | ((h >> 3) & 16))) - m3
            out[b, 128 + l] = d4 * np.float32(np.int32((v2 & 15) | ((h >> 4) & 16))) - m4
            out[b, 160 + l] = d5 * np.float32(np.int32((v2 >> 4) | ((h >> 5) & 16))) - m5
            out[b, 192 + l] = d6 * np.float32(np.int32((v3 & 15) | ((h >> 6) & 16))) - m6
            out[b, 224 + l] = d7 * np.float32(np.int32((v3 >> 4) | ((h >> 7) & 16))) - m7


@parallel_exact_kernel
def dequant_q6_k(out, blocks, n16):
    """Q6_K: out = (d * sc_j) * (q6 - 32); blocks (n, 210) = 128 ql | 64 qh | 16 int8 sc | d."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 208)
        for h in range(2):  # weight h*128 + r*32 + l
            for r in range(4):
                # low 4 bits: ql[h*64 + (r&1)*32 + l], nibble r >> 1; high 2: qh[h*32 + l] >> 2r
                ql = 64 * h + 32 * (r & 1)
                qh = 128 + 32 * h
                o = 128 * h + 32 * r
                j = 192 + 8 * h + 2 * r  # int8 scale bytes of o[0:16] and o[16:32]
                dl0 = d * np.float32(np.int8(blocks[b, j]))
                dl1 = d * np.float32(np.int8(blocks[b, j + 1]))
                for l in range(n16):
                    lo0 = (np.int32(blocks[b, ql + l]) >> (4 * (r >> 1))) & 15
                    lo1 = (np.int32(blocks[b, ql + 16 + l]) >> (4 * (r >> 1))) & 15
                    hi0 = (np.int32(blocks[b, qh + l]) >> (2 * r)) & 3
                    hi1 = (np.int32(blocks[b, qh + 16 + l]) >> (2 * r)) & 3
                    out[b, o + l] = dl0 * np.float32(np.int32((lo0 | (hi0 << 4)) - 32))
                    out[b, o + 16 + l] = dl1 * np.float32(np.int32((lo1 | (hi1 << 4)) - 32))


@parallel_exact_kernel
def dequant_iq4_xs(out, blocks, levels, n16):
    """IQ4_XS: out = (d * (sc_i - 32)) * levels[q4]; blocks (n, 136) = d | u16 sh | 4 sl | 128 q."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        scales_h = np.int32(blocks[b, 2]) | (np.int32(blocks[b, 3]) << 8)  # 2 bits per sub-block
        for i in range(8):  # sub-block i: 16 bytes -> 32 weights, low nibbles first
            lo = (np.int32(blocks[b, 4 + (i >> 1)]) >> (4 * (i & 1))) & 15
            hi = (scales_h >> (2 * i)) & 3
            dl = d * np.float32(np.int32((lo | (hi << 4)) - 32))
            q = 8 + 16 * i
            o = 32 * i
            for k in range(n16):
                v = np.int32(blocks[b, q + k])
                out[b, o + k] = dl * levels[v & 15]
                out[b, o + 16 + k] = dl * levels[v >> 4]
