"""Bit-exact dequantization kernels for the float and 32-weight block formats.

Covers F16, BF16 (element formats) and Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (32-weight blocks).
Every kernel repeats the float32 operations of gguf.quants' numpy code in the same order
(no fastmath, so no FMA contraction), so results equal gguf.quants.dequantize bit for bit.

Conventions: outputs first, then inputs, then sizes. Block kernels take out (n_blocks, 32)
float32 and blocks (n_blocks, type_size) uint8, both C-contiguous; prange runs over blocks.
The size argument n16 (always 16) is the inner trip count, passed at run time on purpose:
with a constant count LLVM fully unrolls the loop, and since Numba cannot tell it that out
and blocks do not alias, the unrolled loads cannot be moved past the stores, so the SLP
vectorizer gives up (scalar code, 2-4x slower). A run-time count keeps the loop for the loop
vectorizer (behind a run-time overlap check); min(n16, 16) tells it the count is at most 16,
so it picks one 16-lane vector instead of a 64-wide body that 16 iterations never enter.
Inner loops therefore run 16 iterations and store at constant offsets (j, 16 + j, ...).
Integers are narrowed with np.int32 before conversion: int32 -> float32 vectorizes.
"""

import numpy as np
from numba import prange

from kernels._jit import exact_kernel, parallel_exact_kernel

# Numba has no float16 on CPU (float16 -> float32 raises NotImplementedError), so halves are
# decoded from their bits. Constants are typed so that no operation widens to int64/float64.
_U13 = np.uint32(13)
_U16 = np.uint32(16)
_SIGN16 = np.uint32(0x8000)
_MAG16 = np.uint32(0x7FFF)
_MANT16 = np.uint32(0x3FF)
_REBIAS = np.uint32(112 << 23)  # exponent bias 15 -> 127, in float32's exponent field
_F32_MIN_NORMAL = np.uint32(0x00800000)  # shifted half magnitudes below this are subnormal
_HALF_INF_SHIFTED = np.uint32(0x0F800000)  # 0x7C00 << 13: half exponent all ones
_F32_EXP = np.uint32(0x7F800000)
_TWO_POW_M24 = np.float32(2.0**-24)  # value of the half subnormal mantissa's unit

# IQ4_NL / IQ4_XS non-linear levels (llama.cpp's kvalues_iq4nl), as float32: the int8 -> float32
# conversion gguf does is exact, so a float32 table gives the same values.
IQ4_LEVELS = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32
)


@exact_kernel
def half_bits_to_f32_bits(h):
    """uint32 bits of the float32 equal to the IEEE half with bits h (exact; NaN payload kept)."""
    h = np.uint32(h)
    # Numba widens integer arithmetic to 64 bits; np.uint32(...) narrows back (needed by .view).
    sign = np.uint32((h & _SIGN16) << _U16)
    mag = np.uint32((h & _MAG16) << _U13)  # exponent and mantissa at float32's positions
    bits = np.uint32(mag + _REBIAS)  # normal: only the exponent bias changes
    if mag < _F32_MIN_NORMAL:  # zero or subnormal: mantissa * 2**-24, exact and a normal
        # float32, so no denormal operand is involved (flush-to-zero modes cannot change it)
        bits = np.float32(np.float32(h & _MANT16) * _TWO_POW_M24).view(np.uint32)
    if mag >= _HALF_INF_SHIFTED:  # inf / NaN: exponent all ones, payload kept as numpy does
        bits = np.uint32(mag | _F32_EXP)
    return np.uint32(bits | sign)


@exact_kernel
def f16_at(blocks, b, i):
    """float32 value of the little-endian half at blocks[b, i], blocks[b, i + 1] (uint8)."""
    h = np.uint32(blocks[b, i]) | (np.uint32(blocks[b, i + 1]) << np.uint32(8))
    return np.uint32(half_bits_to_f32_bits(h)).view(np.float32)


@exact_kernel
def u32_at(blocks, b, i):
    """The little-endian uint32 at blocks[b, i:i + 4] (Q5 high bits: bit j belongs to weight j)."""
    return (
        np.uint32(blocks[b, i])
        | (np.uint32(blocks[b, i + 1]) << np.uint32(8))
        | (np.uint32(blocks[b, i + 2]) << np.uint32(16))
        | (np.uint32(blocks[b, i + 3]) << np.uint32(24))
    )


@parallel_exact_kernel
def dequant_f16(out_bits, src):
    """out_bits[i] = float32 bits of half src[i]; out_bits (n,) uint32, src (n,) uint16."""
    for i in prange(src.shape[0]):
        out_bits[i] = half_bits_to_f32_bits(src[i])


@parallel_exact_kernel
def dequant_bf16(out_bits, src):
    """out_bits[i] = src[i] << 16 (bf16 is the top half of a float32); (n,) uint32, (n,) uint16."""
    for i in prange(src.shape[0]):
        out_bits[i] = np.uint32(src[i]) << _U16  # stored as uint32


@parallel_exact_kernel
def dequant_q4_0(out, blocks, n16):
    """Q4_0: out[b, j] = d * (nibble_j - 8); blocks (n, 18) = f16 d | 16 bytes; n16 = 16."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for j in range(n16):  # byte j: low nibble is weight j, high nibble weight j + 16
            v = np.int32(blocks[b, 2 + j])
            out[b, j] = d * np.float32(np.int32((v & 15) - 8))
            out[b, 16 + j] = d * np.float32(np.int32((v >> 4) - 8))


@exact_kernel
def nan_first_add(x, m):
    """x + m, a NaN x kept as it is. When both are NaN, gguf's NumPy (x86) returns the first
    operand's NaN; LLVM may swap the operands of an add (it commutes), so the select pins it."""
    return x if x != x else x + m


@parallel_exact_kernel
def dequant_q4_1(out, blocks, n16):
    """Q4_1: out[b, j] = d * nibble_j + m; blocks (n, 20) = f16 d | f16 m | 16 bytes; n16 = 16."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        m = f16_at(blocks, b, 2)
        for j in range(n16):
            v = np.int32(blocks[b, 4 + j])
            out[b, j] = nan_first_add(d * np.float32(np.int32(v & 15)), m)  # gguf: (d * qs) + m
            out[b, 16 + j] = nan_first_add(d * np.float32(np.int32(v >> 4)), m)


@parallel_exact_kernel
def dequant_q5_0(out, blocks, n16):
    """Q5_0: out[b, j] = d * (q5_j - 16); blocks (n, 22) = f16 d | u32 high bits | 16 bytes."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        qh = u32_at(blocks, b, 2)
        for j in range(n16):
            v = np.int32(blocks[b, 6 + j])
            # bit 4 of weights j and j + 16. A per-lane variable shift: LLVM keeps it in 64-bit
            # lanes, so Q5_0/Q5_1 run at about half the speed of Q4_0 (measured; no cheap fix).
            h0 = np.int32((qh >> np.uint32(j)) & np.uint32(1))
            h1 = np.int32((qh >> np.uint32(j + 16)) & np.uint32(1))
            out[b, j] = d * np.float32(np.int32(((v & 15) | (h0 << 4)) - 16))
            out[b, 16 + j] = d * np.float32(np.int32(((v >> 4) | (h1 << 4)) - 16))


@parallel_exact_kernel
def dequant_q5_1(out, blocks, n16):
    """Q5_1: out[b, j] = d * q5_j + m; blocks (n, 24) = f16 d | f16 m | u32 high bits | 16 bytes."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        m = f16_at(blocks, b, 2)
        qh = u32_at(blocks, b, 4)
        for j in range(n16):
            v = np.int32(blocks[b, 8 + j])
            h0 = np.int32((qh >> np.uint32(j)) & np.uint32(1))
            h1 = np.int32((qh >> np.uint32(j + 16)) & np.uint32(1))
            out[b, j] = nan_first_add(d * np.float32(np.int32((v & 15) | (h0 << 4))), m)
            out[b, 16 + j] = nan_first_add(d * np.float32(np.int32((v >> 4) | (h1 << 4))), m)


@parallel_exact_kernel
def dequant_q8_0(out, blocks, n16):
    """Q8_0: out[b, j] = int8_j * d; blocks (n, 34) = f16 d | 32 int8; n16 = 16."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for j in range(n16):
            out[b, j] = np.float32(np.int8(blocks[b, 2 + j])) * d
            out[b, 16 + j] = np.float32(np.int8(blocks[b, 18 + j])) * d


@parallel_exact_kernel
def dequant_iq4_nl(out, blocks, levels, n16):
    """IQ4_NL: out[b, j] = d * levels[nibble_j]; blocks (n, 18) = f16 d | 16 bytes; n16 = 16."""
    n16 = min(n16, 16)  # run-time trip count with a known bound: see module doc
    for b in prange(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for j in range(n16):
            v = np.int32(blocks[b, 2 + j])
            out[b, j] = d * levels[v & 15]
            out[b, 16 + j] = d * levels[v >> 4]
