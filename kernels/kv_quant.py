"""Writing KV cache rows: float32 values to a cache type's storage (kernels.kv_types), exactly.

Each quantizer is llama.cpp's reference (ggml-quants.c quantize_row_*_ref), with the float32
operations of gguf.quants' NumPy port in the same order, so the bytes equal
gguf.quants.quantize's bit for bit (tests/test_kv_quant.py); IQ4_NL, which gguf cannot
quantize, is quantize_row_iq4_nl_ref (its ntry = -1: one pass, no scale search), checked
against bytes recorded from llama.cpp. f16 rounds to nearest even (kernels.half), bf16 as
ggml_compute_fp32_to_bf16 (NaN made quiet, then round to nearest even). A quantized block
whose largest |x| is below 1e-15 gets scale 0 (llama.cpp's IQ4_NL leaves its codes as
whatever its buffer held; here they are 0, which dequantizes the same).

All kernels are exact (no fastmath: no FMA contraction, no reassociation).
Layout: x (head_dim,) float32 -> out (row_width,) of the type's storage dtype.
"""

from __future__ import annotations

import numpy as np

from kernels import kv_types as kt
from kernels._jit import exact_kernel
from kernels.dequant_legacy import IQ4_LEVELS
from kernels.half import f32_to_half

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_LEVELS_I = IQ4_LEVELS  # (16,) float32 holding the int8 levels -127 .. 113 (exact)


@exact_kernel
def bf16_bits(x):
    """uint16 bits of x rounded to bfloat16 as ggml (and gguf) do."""
    n = np.uint32(np.float32(x).view(np.uint32))
    if (n & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):  # NaN: keep it, quiet
        return np.uint16((n >> np.uint32(16)) | np.uint32(64))
    return np.uint16((np.uint64(n) + np.uint64(0x7FFF) + np.uint64((n >> np.uint32(16)) & np.uint32(1))) >> 16)


@exact_kernel
def _put_half(out, o, x):
    """out[o], out[o + 1] = the little-endian half bits of x."""
    h = f32_to_half(x)
    out[o] = np.uint8(h & np.uint16(0xFF))
    out[o + 1] = np.uint8(h >> np.uint16(8))


@exact_kernel
def _roundf(v):
    """C roundf (half away from zero) in float32, as gguf's np_roundf computes it."""
    a = abs(v)
    fl = np.float32(np.floor(a))
    b = np.float32(fl + np.float32(np.floor(np.float32(2.0) * (a - fl))))
    return -b if v < 0 else b


@exact_kernel
def _absmax(x, o):
    """(largest |x[o + j]|, that x value) over the block, the first of equals."""
    amax = _ZERO
    mx = _ZERO
    for j in range(kt.BLOCK):
        v = x[o + j]
        if abs(v) > amax:
            amax = abs(v)
            mx = v
    return amax, mx


@exact_kernel
def _minmax(x, o):
    lo = x[o]
    hi = x[o]
    for j in range(1, kt.BLOCK):
        lo = min(lo, x[o + j])
        hi = max(hi, x[o + j])
    return lo, hi


@exact_kernel
def _code(v, top):
    """int(trunc(v)) clipped to [0, top] (v >= 0 in practice)."""
    q = np.int32(np.trunc(v)) if v > _ZERO else np.int32(0)
    return min(q, top)


@exact_kernel
def _pack(out, o, codes):
    """16 bytes at out[o:]: byte j = low 4 bits of codes[j] | those of codes[j + 16] << 4."""
    for j in range(16):
        out[o + j] = np.uint8((codes[j] & 15) | ((codes[j + 16] & 15) << 4))


@exact_kernel
def _high_bits(out, o, codes):
    """4 bytes at out[o:]: bit j of the little-endian uint32 = bit 4 of codes[j]."""
    for k in range(4):
        b = 0
        for i in range(8):
            b |= ((codes[8 * k + i] >> 4) & 1) << i
        out[o + k] = np.uint8(b)


@exact_kernel
def _best_index(v):
    """llama.cpp's best_index_int8 over the IQ4_NL levels: the nearest level's index."""
    if v <= _LEVELS_I[0]:
        return 0
    if v >= _LEVELS_I[15]:
        return 15
    ml, mu = 0, 15
    while mu - ml > 1:
        mav = (ml + mu) // 2
        if v < _LEVELS_I[mav]:
            mu = mav
        else:
            ml = mav
    return mu - 1 if v - _LEVELS_I[mu - 1] < _LEVELS_I[mu] - v else mu


@exact_kernel
def _block(out, ob, x, o, t, codes):
    """Quantize x[o:o + 32] into out[ob:ob + block_bytes] as type t; codes (32,) int32 scratch."""
    if t == kt.Q8_0:
        amax, _ = _absmax(x, o)
        d = amax / np.float32(127.0)
        inv = _ONE / d if d != _ZERO else _ZERO
        _put_half(out, ob, d)
        for j in range(kt.BLOCK):
            out[ob + 2 + j] = np.uint8(np.int8(np.int32(_roundf(x[o + j] * inv))))
    elif t == kt.Q4_0 or t == kt.Q5_0:
        _, mx = _absmax(x, o)
        half_range = np.float32(8.0) if t == kt.Q4_0 else np.float32(16.0)
        d = mx / -half_range
        inv = _ONE / d if d != _ZERO else _ZERO
        top = 15 if t == kt.Q4_0 else 31
        for j in range(kt.BLOCK):
            codes[j] = _code(x[o + j] * inv + (half_range + _HALF), top)
        _put_half(out, ob, d)
        if t == kt.Q4_0:
            _pack(out, ob + 2, codes)
        else:
            _high_bits(out, ob + 2, codes)
            _pack(out, ob + 6, codes)
    elif t == kt.Q4_1 or t == kt.Q5_1:
        lo, hi = _minmax(x, o)
        top = 15 if t == kt.Q4_1 else 31
        d = (hi - lo) / np.float32(top)
        inv = _ONE / d if d != _ZERO else _ZERO
        for j in range(kt.BLOCK):
            codes[j] = _code((x[o + j] - lo) * inv + _HALF, top)
        _put_half(out, ob, d)
        _put_half(out, ob + 2, lo)
        if t == kt.Q4_1:
            _pack(out, ob + 4, codes)
        else:
            _high_bits(out, ob + 4, codes)
            _pack(out, ob + 8, codes)
    elif t == kt.IQ4_NL:
        amax, mx = _absmax(x, o)
        d = _ZERO
        for j in range(kt.BLOCK):
            codes[j] = 0
        if amax >= np.float32(1e-15):
            d = mx / _LEVELS_I[0]
            inv = _ONE / d
            sumqx = _ZERO
            sumq2 = _ZERO
            for j in range(kt.BLOCK):
                xj = x[o + j]
                w = xj * xj
                codes[j] = _best_index(inv * xj)
                q = _LEVELS_I[codes[j]]
                sumqx += w * q * xj
                sumq2 += w * q * q
            d = sumqx / sumq2 if sumq2 > _ZERO else _ZERO
        _put_half(out, ob, d)
        _pack(out, ob + 2, codes)


@exact_kernel
def quantize_row(out, x, t, codes):
    """out (head_dim // 32 * block_bytes,) uint8 <- x (head_dim,) float32 as block type t; codes (32,) int32 scratch."""
    bb = 34 if t == kt.Q8_0 else 18 if t == kt.Q4_0 or t == kt.IQ4_NL else 20 if t == kt.Q4_1 else (
        22 if t == kt.Q5_0 else 24)
    for b in range(x.shape[0] // kt.BLOCK):
        _block(out, b * bb, x, b * kt.BLOCK, t, codes)


@exact_kernel
def store_row(c, s, g, p, x, codes):
    """Cache c = (type, f, h, b) (kvcache.KVCache.refs: the arrays (n_seq, n_kv, n_ctx, width) of
    each storage dtype, the unused ones empty): row (s, g, p) <- x (head_dim,) float32."""
    t = c[0]
    if t == kt.F32:
        row = c[1][s, g, p]
        for d in range(x.shape[0]):
            row[d] = x[d]
    elif t == kt.F16:
        h = c[2][s, g, p]
        for d in range(x.shape[0]):
            h[d] = f32_to_half(x[d])
    elif t == kt.BF16:
        h = c[2][s, g, p]
        for d in range(x.shape[0]):
            h[d] = bf16_bits(x[d])
    else:
        quantize_row(c[3][s, g, p], x, t, codes)


@exact_kernel
def _rows(out, x, t, codes):
    """out (n, width) <- x (n, head_dim) float32, for one of the storage dtypes."""
    for i in range(x.shape[0]):
        if t == kt.F16:
            for d in range(x.shape[1]):
                out[i, d] = f32_to_half(x[i, d])
        elif t == kt.BF16:
            for d in range(x.shape[1]):
                out[i, d] = bf16_bits(x[i, d])
        else:
            quantize_row(out[i], x[i], t, codes)


def quantize_rows(x: np.ndarray, t: int) -> np.ndarray:
    """Storage (*leading, row_width) of float32 rows x (*leading, head_dim) as cache type t (host)."""
    x = np.ascontiguousarray(x, np.float32)
    dim = x.shape[-1]
    if t == kt.F32:
        return x.copy()
    out = np.empty((*x.shape[:-1], kt.row_width(t, dim)), kt.storage_dtype(t))
    if x.size:
        _rows(out.reshape(-1, out.shape[-1]), x.reshape(-1, dim), t, np.zeros(kt.BLOCK, np.int32))
    return out


def dequantize_rows(rows: np.ndarray, t: int) -> np.ndarray:
    """float32 (*leading, head_dim) of storage rows (*leading, row_width) of cache type t (host, exact:
    gguf.quants.dequantize's values)."""
    from kernels.dequant import dequantize

    if t == kt.F32:
        return np.array(rows, np.float32)
    return dequantize(np.ascontiguousarray(rows), t)
