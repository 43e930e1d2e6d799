"""KV cache rows on the device: reading one value of a row (attention) and writing a row (the
cache store in kernels.cuda.heads), for every cache type of kernels.kv_types.

Device storage per (sequence, kv head): rows (n_ctx, width) of float32 (f32), float16 (f16),
uint16 bfloat16 bits (bf16) or uint8 ggml blocks (the quantized types), as the host's
(service.model.kvcache). Quantized rows come with `half`, the same bytes viewed as float16:
every block scale sits at an even byte offset of a row of even-sized blocks, so the scale at
byte o is half[o // 2] (numba.cuda has no scalar bit reinterpretation; float16 <-> float32
conversions are exact, and a float32 stored into a float16 array rounds to nearest even).
For the other types `half` is any array of the same rank (it is not read).

Writes are exact (kernels.kv_quant's arithmetic: products that feed an add go through
kernels.cuda.exact.mul, so NVVM cannot fuse them) and run in an exact kernel; reads may use
fast math.
"""

import math

import numpy as np
from numba import cuda

from kernels import kv_types as kt
from kernels._jit import cuda_device, cuda_exact_device
from kernels.cuda.exact import mul
from kernels.cuda.launch import simulated
from kernels.dequant_legacy import IQ4_LEVELS

_LEVELS = IQ4_LEVELS  # (16,) float32, frozen as a constant array
_F32, _F16, _BF16 = kt.F32, kt.F16, kt.BF16
_Q8_0, _Q4_0, _Q4_1, _Q5_0, _Q5_1, _IQ4_NL = kt.Q8_0, kt.Q4_0, kt.Q4_1, kt.Q5_0, kt.Q5_1, kt.IQ4_NL
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)

if simulated():

    @cuda_exact_device
    def as_float(bits):
        """float32 whose bits are the low 32 of bits."""
        return np.uint32(np.int64(bits) & 0xFFFFFFFF).view(np.float32)

    @cuda_exact_device
    def as_bits(x):
        """int64 of the float32 x's bits (0 .. 2**32 - 1)."""
        return np.int64(np.float32(x).view(np.uint32))

else:
    from numba.cuda import libdevice

    @cuda_exact_device
    def as_float(bits):
        return libdevice.int_as_float(np.int32(np.int64(bits) & 0xFFFFFFFF))

    @cuda_exact_device
    def as_bits(x):
        return np.int64(libdevice.float_as_int(np.float32(x))) & 0xFFFFFFFF


@cuda_exact_device
def is_block(t):
    """True for the quantized (32-value block) cache types."""
    return t != _F32 and t != _F16 and t != _BF16


@cuda_exact_device
def block_bytes(t):
    if t == _Q8_0:
        return 34
    if t == _Q4_1:
        return 20
    if t == _Q5_0:
        return 22
    if t == _Q5_1:
        return 24
    return 18


@cuda_device
def kv_at(rows, half, j, d, t):
    """float32 value d of row j of rows (n_ctx, width) of cache type t (half: see the module doc)."""
    if t == _F32 or t == _F16:
        return np.float32(rows[j, d])
    if t == _BF16:
        return as_float(np.int64(rows[j, d]) << 16)
    bb = block_bytes(t)
    o = (d // 32) * bb
    i = d % 32
    dd = np.float32(half[j, o // 2])
    if t == _Q8_0:
        v = np.int32(rows[j, o + 2 + i])
        return np.float32(v - ((v & 128) << 1)) * dd
    qo = o + bb - 16  # the 16 bytes of nibbles end every block
    q = (np.int32(rows[j, qo + i % 16]) >> (4 * (i // 16))) & 15
    if t == _Q5_0 or t == _Q5_1:
        hb = o + bb - 20  # the uint32 of 5th bits: bit i in byte i // 8
        q |= ((np.int32(rows[j, hb + i // 8]) >> (i % 8)) & 1) << 4
    if t == _Q4_0:
        return dd * np.float32(q - 8)
    if t == _Q5_0:
        return dd * np.float32(q - 16)
    if t == _IQ4_NL:
        return dd * _LEVELS[q]
    return dd * np.float32(q) + np.float32(half[j, o // 2 + 1])  # Q4_1, Q5_1: d * q + m


@cuda_exact_device
def put_elem(rows, p, d, x, t):
    """Element d of row p of a float cache type (f32, f16: a store; bf16: rounded as ggml does)."""
    if t == _BF16:
        n = as_bits(x)
        if (n & 0x7FFFFFFF) > 0x7F800000:
            rows[p, d] = np.uint16((n >> 16) | 64)
        else:
            rows[p, d] = np.uint16(((n + 0x7FFF + ((n >> 16) & 1)) >> 16) & 0xFFFF)
    else:
        rows[p, d] = x


@cuda_exact_device
def _roundf(v):
    a = abs(v)
    fl = np.float32(math.floor(a))
    b = fl + np.float32(math.floor(np.float32(2.0) * (a - fl)))
    return -b if v < _ZERO else b


@cuda_exact_device
def _best_index(v):
    if v <= _LEVELS[0]:
        return 0
    if v >= _LEVELS[15]:
        return 15
    ml = 0
    mu = 15
    while mu - ml > 1:
        mav = (ml + mu) // 2
        if v < _LEVELS[mav]:
            mu = mav
        else:
            ml = mav
    return mu - 1 if v - _LEVELS[mu - 1] < _LEVELS[mu] - v else mu


@cuda_exact_device
def put_block(rows, half, p, x, b, t):
    """Block b of row p of a quantized cache <- x[32 b : 32 b + 32] (x: float32, shared), as
    kernels.kv_quant._block writes it (one thread per block)."""
    codes = cuda.local.array(32, np.int32)
    bb = block_bytes(t)
    o = b * bb
    x0 = b * 32
    amax = _ZERO
    mx = _ZERO
    lo = x[x0]
    hi = x[x0]
    for j in range(32):
        v = x[x0 + j]
        if abs(v) > amax:
            amax = abs(v)
            mx = v
        lo = min(lo, v)
        hi = max(hi, v)
    qo = o + bb - 16
    if t == _Q8_0:
        d = amax / np.float32(127.0)
        inv = _ONE / d if d != _ZERO else _ZERO
        half[p, o // 2] = d
        for j in range(32):
            q = np.int32(_roundf(x[x0 + j] * inv))
            rows[p, o + 2 + j] = np.uint8(q & 255)
        return
    if t == _IQ4_NL:
        d = _ZERO
        for j in range(32):
            codes[j] = 0
        if amax >= np.float32(1e-15):
            d = mx / _LEVELS[0]
            inv = _ONE / d
            sumqx = _ZERO
            sumq2 = _ZERO
            for j in range(32):
                xj = x[x0 + j]
                w = mul(xj, xj)
                codes[j] = _best_index(mul(inv, xj))
                q = _LEVELS[codes[j]]
                sumqx += mul(mul(w, q), xj)
                sumq2 += mul(mul(w, q), q)
            d = sumqx / sumq2 if sumq2 > _ZERO else _ZERO
        half[p, o // 2] = d
    elif t == _Q4_0 or t == _Q5_0:
        rng = np.float32(8.0) if t == _Q4_0 else np.float32(16.0)
        top = 15 if t == _Q4_0 else 31
        d = mx / -rng
        inv = _ONE / d if d != _ZERO else _ZERO
        for j in range(32):
            v = mul(x[x0 + j], inv) + (rng + _HALF)
            codes[j] = min(np.int32(v) if v > _ZERO else np.int32(0), top)
        half[p, o // 2] = d
    else:  # Q4_1, Q5_1
        top = 15 if t == _Q4_1 else 31
        d = (hi - lo) / np.float32(top)
        inv = _ONE / d if d != _ZERO else _ZERO
        for j in range(32):
            v = mul(x[x0 + j] - lo, inv) + _HALF
            codes[j] = min(np.int32(v) if v > _ZERO else np.int32(0), top)
        half[p, o // 2] = d
        half[p, o // 2 + 1] = lo
    for j in range(16):
        rows[p, qo + j] = np.uint8((codes[j] & 15) | ((codes[j + 16] & 15) << 4))
    if t == _Q5_0 or t == _Q5_1:
        hb = o + bb - 20
        for k in range(4):
            byte = 0
            for i in range(8):
                byte |= ((codes[8 * k + i] >> 4) & 1) << i
            rows[p, hb + k] = np.uint8(byte)
