"""CUDA dequantization of the 256-weight super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS.

Mirrors kernels.dequant_k, bit for bit with gguf.quants. Same design and conventions as
kernels.cuda.dequant (which dispatches here): one thread per output weight in a grid-stride
loop; out (n,) float32, src (n_blocks * type_size,) uint8, h the same bytes as float16 (the
half at byte k is h[k // 2]); bytes widened with np.int32 before any arithmetic.

Float order, as gguf: the sub-block scale first (d * sc, dmin * m, each rounded), then
scale * quant, then minus the min. Products that feed a subtraction go through mul() so that
NVVM cannot contract them into an FMA (one rounding instead of gguf's two).

Weight w (0..255) of a super-block, in the layouts below: hf = w // 128 (which half),
r = w // 32 % 4 (which 2-bit plane in that half), l = w % 32 (byte within a 32-byte run).
"""

import numpy as np
from numba import cuda

from kernels._jit import cuda_exact_device, cuda_exact_kernel
from kernels.cuda.exact import mul
from kernels.dequant_legacy import IQ4_LEVELS

_LEVELS = IQ4_LEVELS  # (16,) float32, a module global: numba.cuda freezes it as a constant array


@cuda_exact_kernel
def q2_k(out, src, h, n):
    """Q2_K: out = (d * sc) * q2 - (dmin * m); 84 bytes = 16 sc|m nibbles | 64 qs | d | dmin."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 84, i % 256
        s = np.int32(src[o + w // 16])  # 16-weight sub-block: low nibble scale, high nibble min
        q = (np.int32(src[o + 16 + (w // 128) * 32 + w % 32]) >> (2 * (w // 32 % 4))) & 3
        dl = np.float32(h[(o + 80) // 2]) * np.float32(s & 15)
        ml = mul(np.float32(h[(o + 82) // 2]), np.float32(s >> 4))
        out[i] = mul(dl, np.float32(q)) - ml


@cuda_exact_device
def _q3_scale(src, o, j):
    """Signed 6-bit scale j (0..15) of the Q3_K block at o: low 4 bits at 96.., high 2 at 104.."""
    lo = (np.int32(src[o + 96 + j % 8]) >> (4 * (j // 8))) & 15
    hi = (np.int32(src[o + 104 + j % 4]) >> (2 * (j // 4))) & 3
    return (lo | (hi << 4)) - 32


@cuda_exact_kernel
def q3_k(out, src, h, n):
    """Q3_K: out = (d * sc) * (q2 - 4 * !hbit); 110 bytes = 32 hmask | 64 qs | 12 sc | d."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 110, i % 256
        lo = (np.int32(src[o + 32 + (w // 128) * 32 + w % 32]) >> (2 * (w // 32 % 4))) & 3
        hbit = (np.int32(src[o + w % 32]) >> (w // 32)) & 1  # bit w // 32 of hmask[w % 32]
        q = lo - ((hbit ^ 1) << 2)  # a set bit means no -4
        dl = np.float32(h[(o + 108) // 2]) * np.float32(_q3_scale(src, o, w // 16))
        out[i] = dl * np.float32(q)


@cuda_exact_device
def _k_scale_min(src, o, j):
    """(scale, min) of sub-block j (0..7) of a Q4_K / Q5_K block at o: 6-bit pairs in 4..15."""
    if j < 4:
        return np.int32(src[o + 4 + j]) & 63, np.int32(src[o + 8 + j]) & 63
    lo = np.int32(src[o + 8 + j])  # low 4 bits of scale and min j; their top 2 bits sit above
    sc = (lo & 15) | ((np.int32(src[o + j]) >> 6) << 4)
    return sc, (lo >> 4) | ((np.int32(src[o + 4 + j]) >> 6) << 4)


@cuda_exact_device
def _k_value(src, h, o, j, q):
    """(d * sc_j) * q - (dmin * m_j) for quant q of sub-block j of the Q4_K / Q5_K block at o."""
    sc, m = _k_scale_min(src, o, j)
    dl = np.float32(h[o // 2]) * np.float32(sc)
    ml = mul(np.float32(h[o // 2 + 1]), np.float32(m))
    return mul(dl, np.float32(q)) - ml


@cuda_exact_kernel
def q4_k(out, src, h, n):
    """Q4_K: out = (d * sc) * q4 - (dmin * m); 144 bytes = d | dmin | 12 sc | 128 qs."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 144, i % 256
        # qs byte 32c + l: low nibble weight 64c + l, high nibble weight 64c + 32 + l
        q = (np.int32(src[o + 16 + (w // 64) * 32 + w % 32]) >> (4 * (w // 32 % 2))) & 15
        out[i] = _k_value(src, h, o, w // 32, q)


@cuda_exact_kernel
def q5_k(out, src, h, n):
    """Q5_K: out = (d * sc) * q5 - (dmin * m); 176 bytes = d | dmin | 12 sc | 32 qh | 128 qs."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 176, i % 256
        lo = (np.int32(src[o + 48 + (w // 64) * 32 + w % 32]) >> (4 * (w // 32 % 2))) & 15
        hi = (np.int32(src[o + 16 + w % 32]) >> (w // 32)) & 1  # bit w // 32 of qh[w % 32]
        out[i] = _k_value(src, h, o, w // 32, lo | (hi << 4))


@cuda_exact_kernel
def q6_k(out, src, h, n):
    """Q6_K: out = (d * sc) * (q6 - 32); 210 bytes = 128 ql | 64 qh | 16 int8 sc | d."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 210, i % 256
        hf, r, l = w // 128, w // 32 % 4, w % 32
        # low 4 bits: nibble r // 2 of ql[64 hf + 32 (r % 2) + l]; high 2: qh[32 hf + l] >> 2r
        lo = (np.int32(src[o + 64 * hf + 32 * (r % 2) + l]) >> (4 * (r // 2))) & 15
        hi = (np.int32(src[o + 128 + 32 * hf + l]) >> (2 * r)) & 3
        s = np.int32(src[o + 192 + w // 16])
        dl = np.float32(h[(o + 208) // 2]) * np.float32(s - ((s & 128) << 1))  # int8 scale
        out[i] = dl * np.float32((lo | (hi << 4)) - 32)


@cuda_exact_kernel
def iq4_xs(out, src, h, n):
    """IQ4_XS: out = (d * (sc - 32)) * levels[q4]; 136 bytes = d | u16 sh | 4 sl | 128 qs."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, w = (i // 256) * 136, i % 256
        b = w // 32  # 32-weight sub-block: 16 bytes, low nibbles first, then high nibbles
        q = (np.int32(src[o + 8 + 16 * b + w % 16]) >> (4 * (w // 16 % 2))) & 15
        lo = (np.int32(src[o + 4 + b // 2]) >> (4 * (b % 2))) & 15  # 4-bit scale_l nibbles
        hi = (np.int32(src[o + 2 + b // 4]) >> (2 * (b % 4))) & 3  # u16 scale_h: 2 bits each
        dl = np.float32(h[o // 2]) * np.float32((lo | (hi << 4)) - 32)
        out[i] = dl * _LEVELS[q]
