"""Bit-exact dequantization kernels for the grid, ternary and microscaling formats.

Covers IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (grid codes: a byte or more
selects 4 or 8 small integers of a code book, kernels.iq_grids), TQ1_0, TQ2_0 (ternary) and
MXFP4 (e2m1 values times a power of two). Each kernel repeats gguf.quants' float32 operations
in the same order (no fastmath), so results equal gguf.quants.dequantize bit for bit:
  IQ2_*    ((d * (0.5 + ls)) * 0.25) * g, then times +-1     (IQ3_XXS: * 0.5 instead of * 0.25)
  IQ3_S    (d * (1 + 2 s)) * g, then times +-1
  IQ1_*    (d * (2 s + 1)) * (g + delta), g in -1..1, delta +-1/8
  TQ*      d * (q - 1);   MXFP4  2^(e - 128) * e2m1_doubled
Times -1 is a negation except for NaN, which NumPy's multiply passes through unchanged:
_signed() keeps a NaN as it is, so the payload and sign bits match too.

Conventions: outputs first, then inputs (blocks, then tables), then sizes. out (n_blocks,
block_size) float32, blocks (n_blocks, type_size) uint8, both C-contiguous. Byte layouts follow
gguf.quants; offsets are stated per kernel. These are serial scalar loops over table look-ups,
on purpose: the matmul reads the packed affine form (kernels.unpack_iq), so dequantization of
these types serves token-embedding rows (a few per step) and checks, not the hot path, and a
serial kernel compiles in a third of the time of a prange one (measured 0.6 s against 2.1 s;
ten of them are compiled on a cold cache).
"""

import numpy as np
from kernels._jit import exact_kernel
from kernels.dequant_legacy import f16_at, half_bits_to_f32_bits, u32_at


@exact_kernel
def _signed(v, neg):
    """v * -1 as NumPy computes it when neg: -v, but a NaN passes through with its sign."""
    return -v if neg != 0 and v == v else v


@exact_kernel
def _u16_at(blocks, b, i):
    return np.int32(blocks[b, i]) | (np.int32(blocks[b, i + 1]) << 8)


@exact_kernel
def _grid8(out, b, o, grid, idx, db, signs):
    """out[b, o:o+8] = db * grid[idx, j], negated where bit j of signs is set."""
    for j in range(8):
        v = db * np.float32(grid[idx, j])
        out[b, o + j] = _signed(v, (signs >> j) & 1)


@exact_kernel
def dequant_iq2_xxs(out, blocks, grid, ksigns):
    """IQ2_XXS (66 bytes) = d | 8 x (u32 four grid indices, u32 4 x 7 sign bits | 4-bit ls)."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for i in range(8):
            p = 2 + 8 * i
            aux = u32_at(blocks, b, p + 4)
            ls = np.int32(aux >> np.uint32(28))
            db = (d * (np.float32(0.5) + np.float32(ls))) * np.float32(0.25)
            for k in range(4):
                s = np.int32(ksigns[np.int32(aux >> np.uint32(7 * k)) & 127])
                _grid8(out, b, 32 * i + 8 * k, grid, np.int32(blocks[b, p + k]), db, s)


@exact_kernel
def dequant_iq2_xs(out, blocks, grid, ksigns):
    """IQ2_XS (74) = d | 32 u16 (9-bit grid index | 7-bit sign index) | 8 bytes of 4-bit ls per 16."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for i in range(32):  # group of 8 weights; its scale is nibble i // 2 of bytes 66..73
            ls = (np.int32(blocks[b, 66 + i // 4]) >> (4 * ((i // 2) & 1))) & 15
            db = (d * (np.float32(0.5) + np.float32(ls))) * np.float32(0.25)
            v = _u16_at(blocks, b, 2 + 2 * i)
            _grid8(out, b, 8 * i, grid, v & 511, db, np.int32(ksigns[v >> 9]))


@exact_kernel
def dequant_iq2_s(out, blocks, grid):
    """IQ2_S (82) = d | 32 qs | 32 sign bytes | 8 qh (2 high index bits each) | 8 bytes of ls."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for i in range(32):
            ls = (np.int32(blocks[b, 74 + i // 4]) >> (4 * ((i // 2) & 1))) & 15
            db = (d * (np.float32(0.5) + np.float32(ls))) * np.float32(0.25)
            hi = (np.int32(blocks[b, 66 + i // 4]) >> (2 * (i & 3))) & 3
            idx = np.int32(blocks[b, 2 + i]) | (hi << 8)
            _grid8(out, b, 8 * i, grid, idx, db, np.int32(blocks[b, 34 + i]))


@exact_kernel
def dequant_iq3_xxs(out, blocks, grid, ksigns):
    """IQ3_XXS (98) = d | 64 grid indices (4 weights each) | 8 u32 (4 x 7 sign bits | 4-bit ls)."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for i in range(8):
            aux = u32_at(blocks, b, 66 + 4 * i)
            ls = np.int32(aux >> np.uint32(28))
            db = (d * (np.float32(0.5) + np.float32(ls))) * np.float32(0.5)
            for k in range(4):
                s = np.int32(ksigns[np.int32(aux >> np.uint32(7 * k)) & 127])
                for j in range(8):
                    idx = np.int32(blocks[b, 2 + 8 * i + 2 * k + j // 4])
                    v = db * np.float32(grid[idx, j & 3])
                    out[b, 32 * i + 8 * k + j] = _signed(v, (s >> j) & 1)


@exact_kernel
def dequant_iq3_s(out, blocks, grid):
    """IQ3_S (110) = d | 64 qs | 8 qh (1 high index bit each) | 32 sign bytes | 4 bytes of s."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for i in range(8):
            s = (np.int32(blocks[b, 106 + i // 2]) >> (4 * (i & 1))) & 15
            db = d * np.float32(np.int32(1 + 2 * s))
            for g in range(8 * i, 8 * i + 8):  # grid index g: weights 4g .. 4g + 3
                hi = (np.int32(blocks[b, 66 + g // 8]) >> (g & 7)) & 1
                idx = np.int32(blocks[b, 2 + g]) | (hi << 8)
                for j in range(4):
                    w = 4 * g + j
                    v = db * np.float32(grid[idx, j])
                    out[b, w] = _signed(v, (np.int32(blocks[b, 74 + w // 8]) >> (w & 7)) & 1)


@exact_kernel
def _iq1_group(out, b, o, grid, idx, dl, delta):
    """out[b, o:o+8] = dl * (grid[idx, j] + delta)."""
    for j in range(8):
        out[b, o + j] = dl * (np.float32(grid[idx, j]) + delta)


@exact_kernel
def dequant_iq1_s(out, blocks, grid, delta):
    """IQ1_S (50) = d | 32 qs | 8 u16 qh (4 x 3 high index bits | 3-bit s | delta sign)."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 0)
        for i in range(8):
            qh = _u16_at(blocks, b, 34 + 2 * i)
            dl = d * np.float32(np.int32(2 * ((qh >> 12) & 7) + 1))
            dt = -delta if qh & 0x8000 else delta
            for s in range(4):
                idx = np.int32(blocks[b, 2 + 4 * i + s]) | (((qh >> (3 * s)) & 7) << 8)
                _iq1_group(out, b, 32 * i + 8 * s, grid, idx, dl, dt)


@exact_kernel
def dequant_iq1_m(out, blocks, grid, delta):
    """IQ1_M (56) = 32 qs | 16 qh (a nibble per 8 weights: 3 index bits, delta sign) | 4 u16:
    four 3-bit scales each (one per 16 weights) and a nibble of the f16 d in bits 12..15."""
    for b in range(blocks.shape[0]):
        hb = 0
        for j in range(4):
            hb |= (_u16_at(blocks, b, 48 + 2 * j) >> 12) << (4 * j)
        d = np.uint32(half_bits_to_f32_bits(hb)).view(np.float32)
        for t in range(16):
            s = (_u16_at(blocks, b, 48 + 2 * (t // 4)) >> (3 * (t & 3))) & 7
            dl = d * np.float32(np.int32(2 * s + 1))
            for i in range(2 * t, 2 * t + 2):
                nib = (np.int32(blocks[b, 32 + i // 2]) >> (4 * (i & 1))) & 15
                dt = -delta if nib & 8 else delta
                _iq1_group(out, b, 8 * i, grid, np.int32(blocks[b, i]) | ((nib & 7) << 8), dl, dt)


@exact_kernel
def dequant_tq1_0(out, blocks):
    """TQ1_0 (54) = 48 qs | 4 qh | d: base-3 digits, digit n of byte v is ((v * 3^n mod 256) * 3) >> 8."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 52)
        p = 1
        for n in range(5):
            for j in range(32):
                v = (np.int32(blocks[b, j]) * p) & 255
                out[b, 32 * n + j] = d * np.float32(np.int32(((v * 3) >> 8) - 1))
            for j in range(16):
                v = (np.int32(blocks[b, 32 + j]) * p) & 255
                out[b, 160 + 16 * n + j] = d * np.float32(np.int32(((v * 3) >> 8) - 1))
            if n < 4:
                for j in range(4):
                    v = (np.int32(blocks[b, 48 + j]) * p) & 255
                    out[b, 240 + 4 * n + j] = d * np.float32(np.int32(((v * 3) >> 8) - 1))
            p *= 3


@exact_kernel
def dequant_tq2_0(out, blocks):
    """TQ2_0 (66) = 64 qs | d: weight 128 h + 32 s + l is bits 2s..2s+1 of qs[32 h + l], minus 1."""
    for b in range(blocks.shape[0]):
        d = f16_at(blocks, b, 64)
        for h in range(2):
            for s in range(4):
                for l in range(32):
                    q = (np.int32(blocks[b, 32 * h + l]) >> (2 * s)) & 3
                    out[b, 128 * h + 32 * s + l] = d * np.float32(np.int32(q - 1))


@exact_kernel
def dequant_mxfp4(out, blocks, scales, levels):
    """MXFP4 (17) = e8m0 exponent byte | 16 bytes: low nibbles weights 0..15, high ones 16..31."""
    for b in range(blocks.shape[0]):
        d = scales[np.int32(blocks[b, 0])]
        for j in range(16):
            v = np.int32(blocks[b, 1 + j])
            out[b, j] = d * np.float32(levels[v & 15])
            out[b, 16 + j] = d * np.float32(levels[v >> 4])
