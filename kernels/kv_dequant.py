"""Reading KV cache rows for attention: a few rows of a cache type's storage to float32, on the fly.

Attention (kernels.attention_kv) reads keys and values a chunk of rows at a time into a small
per-lane buffer (CHUNK rows, at most 16 x head_dim floats, in L1) and runs the float32 dot
products and weighted sums on it: the cache itself is never copied whole. f32 rows are copied
too: contiguous rows let the callers' loops vectorize, which made decode attention faster than
reading the cache in place (measured: 0.86 against 0.99 ms at head_dim 64, 0.82 against 1.61 ms
at 256, 4096 keys, one thread). Fast math: the values may differ from the exact
dequantization (kernels.dequant) by an FMA's rounding.

A cache c is the tuple (type, f, h, b) of service.model.kvcache.KVCache.refs: f float32,
h uint16 (f16 or bf16 bits), b uint8 (ggml blocks), each (n_kv, n_ctx, width) for one
sequence; the arrays of the other storage dtypes are empty. Every loop counts from 0 over a
slice (Numba's negative-index fix-up would turn vector loads into gathers otherwise).
"""

from __future__ import annotations

import numpy as np

from kernels import kv_types as kt
from kernels._jit import kernel
from kernels.dequant_legacy import IQ4_LEVELS
from kernels.half import half_to_f32

CHUNK = 16  # rows per chunk: 16 x 256 floats = 16 KiB per buffer at Gemma 3's head_dim
_LEVELS = IQ4_LEVELS
_EIGHT = np.float32(8.0)
_SIXTEEN = np.float32(16.0)


def cache_ref(t: int, a: np.ndarray) -> tuple:
    """The (type, f, h, b) tuple of rows a (..., width) of cache type t: a in its storage dtype's
    place, empty arrays of the same leading shape in the others."""
    lead = a.shape[:-1]
    f = a if t == kt.F32 else np.zeros((*lead, 0), np.float32)
    h = a if t in (kt.F16, kt.BF16) else np.zeros((*lead, 0), np.uint16)
    b = a if kt.is_quantized(t) else np.zeros((*lead, 0), np.uint8)
    return (t, f, h, b)


@kernel
def _half_at(row, o):
    return half_to_f32(np.uint16(row[o]) | (np.uint16(row[o + 1]) << np.uint16(8)))


@kernel
def _q8_0(out, row, nb):
    for k in range(nb):
        blk = row[k * 34 : k * 34 + 34]
        o = out[k * 32 : k * 32 + 32]
        d = _half_at(blk, 0)
        for j in range(32):
            o[j] = d * np.float32(np.int8(blk[2 + j]))


@kernel
def _q4(out, row, nb, t):
    """Q4_0 (d * (q - 8)), Q4_1 (d * q + m) and IQ4_NL (d * levels[q]): 16 bytes of nibbles."""
    bb = 20 if t == kt.Q4_1 else 18
    qo = bb - 16
    for k in range(nb):
        blk = row[k * bb : k * bb + bb]
        o = out[k * 32 : k * 32 + 32]
        d = _half_at(blk, 0)
        qs = blk[qo:bb]
        if t == kt.Q4_0:
            for j in range(16):
                o[j] = d * (np.float32(np.uint8(qs[j] & np.uint8(15))) - _EIGHT)
                o[j + 16] = d * (np.float32(np.uint8(qs[j] >> np.uint8(4))) - _EIGHT)
        elif t == kt.Q4_1:
            m = _half_at(blk, 2)
            for j in range(16):
                o[j] = d * np.float32(np.uint8(qs[j] & np.uint8(15))) + m
                o[j + 16] = d * np.float32(np.uint8(qs[j] >> np.uint8(4))) + m
        else:
            for j in range(16):
                o[j] = d * _LEVELS[qs[j] & np.uint8(15)]
                o[j + 16] = d * _LEVELS[qs[j] >> np.uint8(4)]


@kernel
def _q5(out, row, nb, t):
    """Q5_0 (d * (q - 16)) and Q5_1 (d * q + m): a uint32 of 5th bits, then 16 bytes of nibbles."""
    bb = 24 if t == kt.Q5_1 else 22
    ho = bb - 20
    for k in range(nb):
        blk = row[k * bb : k * bb + bb]
        o = out[k * 32 : k * 32 + 32]
        d = _half_at(blk, 0)
        m = _half_at(blk, 2) if t == kt.Q5_1 else -_SIXTEEN * d
        qh = (np.uint32(blk[ho]) | (np.uint32(blk[ho + 1]) << np.uint32(8)) | (np.uint32(blk[ho + 2]) << np.uint32(16))
              | (np.uint32(blk[ho + 3]) << np.uint32(24)))
        qs = blk[ho + 4 : bb]
        for j in range(16):
            lo = np.uint32(qs[j] & np.uint8(15)) | (((qh >> np.uint32(j)) & np.uint32(1)) << np.uint32(4))
            hi = np.uint32(qs[j] >> np.uint8(4)) | (((qh >> np.uint32(j + 16)) & np.uint32(1)) << np.uint32(4))
            o[j] = d * np.float32(lo) + m
            o[j + 16] = d * np.float32(hi) + m


@kernel
def kv_rows(buf, c, g, j0, j1, dim):
    """float32 (j1 - j0, dim), C-contiguous: rows [j0, j1) of kv head g of cache c, read into buf
    (>= CHUNK * dim floats, j1 - j0 <= CHUNK). Rows are taken by integer index (c[.][g, j]), which
    Numba types as contiguous, so that every loop here and in the callers vectorizes."""
    t = c[0]
    n = j1 - j0
    out = buf[: n * dim].reshape(n, dim)
    for i in range(n):
        oi = out[i]
        if t == kt.F32:
            fi = c[1][g, j0 + i]
            for d in range(dim):
                oi[d] = fi[d]
        elif t == kt.F16:
            hi = c[2][g, j0 + i]
            for d in range(dim):
                oi[d] = half_to_f32(hi[d])
        elif t == kt.BF16:
            hi = c[2][g, j0 + i]
            for d in range(dim):
                oi[d] = np.uint32(np.uint32(hi[d]) << np.uint32(16)).view(np.float32)
        elif t == kt.Q8_0:
            _q8_0(oi, c[3][g, j0 + i], dim // kt.BLOCK)
        elif t == kt.Q5_0 or t == kt.Q5_1:
            _q5(oi, c[3][g, j0 + i], dim // kt.BLOCK, t)
        else:
            _q4(oi, c[3][g, j0 + i], dim // kt.BLOCK, t)
    return out
