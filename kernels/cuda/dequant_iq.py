"""CUDA dequantization of the grid, ternary and MXFP4 formats, bit for bit with gguf.quants.

IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, TQ1_0, TQ2_0, MXFP4: the twins of
kernels.dequant_iq (see there for each format's float order), in kernels.cuda.dequant's design:
one thread per output weight in a grid-stride loop; out (n,) float32, src (n_blocks *
type_size,) uint8 and h, the same bytes as float16 (the half at byte k is h[k // 2]; every d
here sits at an even offset of an even-sized block). Bytes are widened to int64 before any
arithmetic. The code books (kernels.iq_grids) are module globals, which numba.cuda freezes
into constant arrays. Times -1 is _signed(), a negation that leaves NaN alone as NumPy's
multiply does; the product it negates goes through kernels.cuda.exact.mul, so that NVVM cannot
fold the negation into an FMA (no other product here feeds an addition or a subtraction).
Two formats do not fit the (out, src, h, n) launch: MXFP4 blocks are 17 bytes (no float16
view) and IQ1_M splits its d over four nibbles, which a first kernel gathers into a float16
array (numba.cuda has no scalar bit reinterpretation). RUNNERS holds how each is launched.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T
from numba import cuda

from kernels import iq_grids as G
from kernels._jit import cuda_exact_device, cuda_exact_kernel
from kernels.cuda import launch
from kernels.cuda.exact import mul

_IQ1 = G.IQ1_GRID
_IQ2_XXS, _IQ2_XS, _IQ2_S = G.IQ2_XXS_GRID, G.IQ2_XS_GRID, G.IQ2_S_GRID
_IQ3_XXS, _IQ3_S = G.IQ3_XXS_GRID, G.IQ3_S_GRID
_KSIGNS = G.KSIGNS
_E8M0 = G.E8M0_HALF
_E2M1 = G.E2M1_DOUBLED
_POW3 = np.array([1, 3, 9, 27, 81], np.int64)
_DELTA = G.IQ1_DELTA


@cuda_exact_device
def _signed(v, neg):
    """v * -1 as NumPy computes it when neg: -v, but a NaN passes through unchanged."""
    if neg != 0 and v == v:
        return -v
    return v


@cuda_exact_device
def _u16(src, p):
    return np.int64(src[p]) | (np.int64(src[p + 1]) << 8)


@cuda_exact_device
def _u32(src, p):
    return _u16(src, p) | (_u16(src, p + 2) << 16)


@cuda_exact_device
def _iq2_scale(h, o, ls):
    return (np.float32(h[o // 2]) * (np.float32(0.5) + np.float32(ls))) * np.float32(0.25)


@cuda_exact_kernel
def iq2_xxs(out, src, h, n):
    """IQ2_XXS (66 bytes) = d | 8 x (u32 four grid indices, u32 4 x 7 sign bits | 4-bit ls)."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 66, i % 256
        p, k, j = o + 2 + 8 * (w // 32), (w // 8) % 4, w % 8
        aux = _u32(src, p + 4)
        s = np.int64(_KSIGNS[(aux >> (7 * k)) & 127])
        v = mul(_iq2_scale(h, o, aux >> 28), np.float32(_IQ2_XXS[np.int64(src[p + k]), j]))
        out[i] = _signed(v, (s >> j) & 1)


@cuda_exact_kernel
def iq2_xs(out, src, h, n):
    """IQ2_XS (74) = d | 32 u16 (9-bit grid index | 7-bit sign index) | 8 bytes of 4-bit ls per 16."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 74, i % 256
        g, j = w // 8, w % 8
        ls = (np.int64(src[o + 66 + g // 4]) >> (4 * ((g // 2) & 1))) & 15
        v16 = _u16(src, o + 2 + 2 * g)
        v = mul(_iq2_scale(h, o, ls), np.float32(_IQ2_XS[v16 & 511, j]))
        out[i] = _signed(v, (np.int64(_KSIGNS[v16 >> 9]) >> j) & 1)


@cuda_exact_kernel
def iq2_s(out, src, h, n):
    """IQ2_S (82) = d | 32 qs | 32 sign bytes | 8 qh (2 high index bits each) | 8 bytes of ls."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 82, i % 256
        g, j = w // 8, w % 8
        ls = (np.int64(src[o + 74 + g // 4]) >> (4 * ((g // 2) & 1))) & 15
        hi = (np.int64(src[o + 66 + g // 4]) >> (2 * (g & 3))) & 3
        v = mul(_iq2_scale(h, o, ls), np.float32(_IQ2_S[np.int64(src[o + 2 + g]) | (hi << 8), j]))
        out[i] = _signed(v, (np.int64(src[o + 34 + g]) >> j) & 1)


@cuda_exact_kernel
def iq3_xxs(out, src, h, n):
    """IQ3_XXS (98) = d | 64 grid indices (4 weights each) | 8 u32 (4 x 7 sign bits | 4-bit ls)."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 98, i % 256
        aux = _u32(src, o + 66 + 4 * (w // 32))
        db = (np.float32(h[o // 2]) * (np.float32(0.5) + np.float32(aux >> 28))) * np.float32(0.5)
        s = np.int64(_KSIGNS[(aux >> (7 * ((w // 8) % 4))) & 127])
        v = mul(db, np.float32(_IQ3_XXS[np.int64(src[o + 2 + w // 4]), w % 4]))
        out[i] = _signed(v, (s >> (w % 8)) & 1)


@cuda_exact_kernel
def iq3_s(out, src, h, n):
    """IQ3_S (110) = d | 64 qs | 8 qh (1 high index bit each) | 32 sign bytes | 4 bytes of s."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 110, i % 256
        b, g = w // 32, w // 4
        sc = (np.int64(src[o + 106 + b // 2]) >> (4 * (b & 1))) & 15
        db = np.float32(h[o // 2]) * np.float32(1 + 2 * sc)
        hi = (np.int64(src[o + 66 + g // 8]) >> (g & 7)) & 1
        v = mul(db, np.float32(_IQ3_S[np.int64(src[o + 2 + g]) | (hi << 8), w % 4]))
        out[i] = _signed(v, (np.int64(src[o + 74 + w // 8]) >> (w % 8)) & 1)


@cuda_exact_kernel
def iq1_s(out, src, h, n):
    """IQ1_S (50) = d | 32 qs | 8 u16 qh (4 x 3 high index bits | 3-bit s | delta sign)."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 50, i % 256
        qh = _u16(src, o + 34 + 2 * (w // 32))
        dl = np.float32(h[o // 2]) * np.float32(2 * ((qh >> 12) & 7) + 1)
        delta = -_DELTA if qh & 0x8000 else _DELTA
        idx = np.int64(src[o + 2 + w // 8]) | (((qh >> (3 * ((w // 8) % 4))) & 7) << 8)
        out[i] = dl * (np.float32(_IQ1[idx, w % 8]) + delta)


@cuda_exact_kernel
def iq1_m_scales(hbits, src, n_blocks):
    """hbits[b] = IQ1_M block b's float16 d: bits 12..15 of its four uint16 at bytes 48..55."""
    for b in range(cuda.grid(1), n_blocks, cuda.gridsize(1)):
        o = b * 56
        hb = np.int64(0)
        for j in range(4):
            hb |= (_u16(src, o + 48 + 2 * j) >> 12) << (4 * j)
        hbits[b] = hb


@cuda_exact_kernel
def iq1_m(out, src, hd, n):
    """IQ1_M (56) = 32 qs | 16 qh (a nibble per 8 weights) | 4 u16 (3-bit scale per 16 weights);
    hd (n_blocks,) float16: each block's d, from iq1_m_scales."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 56, i % 256
        t, g = w // 16, w // 8
        s = (_u16(src, o + 48 + 2 * (t // 4)) >> (3 * (t & 3))) & 7
        dl = np.float32(hd[i // 256]) * np.float32(2 * s + 1)
        nib = (np.int64(src[o + 32 + g // 2]) >> (4 * (g & 1))) & 15
        delta = -_DELTA if nib & 8 else _DELTA
        out[i] = dl * (np.float32(_IQ1[np.int64(src[o + g]) | ((nib & 7) << 8), w % 8]) + delta)


@cuda_exact_kernel
def tq1_0(out, src, h, n):
    """TQ1_0 (54) = 48 qs | 4 qh | d: digit k of byte v is ((v * 3^k mod 256) * 3) >> 8."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 54, i % 256
        if w < 160:  # bytes 0..31: digits 0..4 are weights 32 k + j
            k, p = w // 32, o + w % 32
        elif w < 240:  # bytes 32..47: weights 160 + 16 k + j
            k, p = (w - 160) // 16, o + 32 + (w - 160) % 16
        else:  # qh bytes 48..51: digits 0..3, weights 240 + 4 k + j
            k, p = (w - 240) // 4, o + 48 + (w - 240) % 4
        v = (np.int64(src[p]) * _POW3[k]) & 255
        out[i] = np.float32(h[(o + 52) // 2]) * np.float32(((v * 3) >> 8) - 1)


@cuda_exact_kernel
def tq2_0(out, src, h, n):
    """TQ2_0 (66) = 64 qs | d: weight 128 hf + 32 s + l is bits 2s..2s+1 of qs[32 hf + l], minus 1."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 66, i % 256
        q = (np.int64(src[o + 32 * (w // 128) + w % 32]) >> (2 * ((w // 32) % 4))) & 3
        out[i] = np.float32(h[(o + 64) // 2]) * np.float32(q - 1)


@cuda_exact_kernel
def mxfp4(out, src, n):
    """MXFP4 (17) = e8m0 exponent byte | 16 bytes: low nibbles weights 0..15, high ones 16..31."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, j = (i // 32) * 17, i % 32
        q = (np.int64(src[o + 1 + j % 16]) >> (4 * (j // 16))) & 15
        out[i] = _E8M0[np.int64(src[o])] * np.float32(_E2M1[q])


def _with_halves(kernel):
    def run(out, src, n):
        grid, block = launch.elementwise(n)
        kernel[grid, block](out, src, src.view(np.float16), n)

    return run


def _run_iq1_m(out, src, n):
    n_blocks = n // 256
    hbits = cuda.device_array(n_blocks, np.uint16)
    grid, block = launch.elementwise(n_blocks)
    iq1_m_scales[grid, block](hbits, src, n_blocks)
    grid, block = launch.elementwise(n)
    iq1_m[grid, block](out, src, hbits.view(np.float16), n)


def _run_mxfp4(out, src, n):
    grid, block = launch.elementwise(n)
    mxfp4[grid, block](out, src, n)


# qtype -> run(out (n,) float32, src (n_bytes,) uint8, n), as kernels.cuda.dequant's runners.
RUNNERS = {
    T.IQ1_S: _with_halves(iq1_s), T.IQ1_M: _run_iq1_m, T.IQ2_XXS: _with_halves(iq2_xxs),
    T.IQ2_XS: _with_halves(iq2_xs), T.IQ2_S: _with_halves(iq2_s), T.IQ3_XXS: _with_halves(iq3_xxs),
    T.IQ3_S: _with_halves(iq3_s), T.TQ1_0: _with_halves(tq1_0), T.TQ2_0: _with_halves(tq2_0), T.MXFP4: _run_mxfp4,
}
