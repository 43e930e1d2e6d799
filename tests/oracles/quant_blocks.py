"""GGML blocks for tests, and gguf's own dequantization as their reference.

Real quantization where gguf can do it, else random bytes with realistic float16 scales
(random scale bytes would give NaN/inf and absurd values). `reference` is
gguf.quants.dequantize: what every dequantization kernel must equal bit for bit.
"""

from __future__ import annotations

import gguf
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import quantize

# Byte offsets of the float16 scale fields (d, and dmin / m) inside one block.
F16_FIELDS = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,), T.IQ4_NL: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,), T.IQ4_XS: (0,),
}
# gguf.quants.quantize makes these. It quantizes MXFP4 too, but through a 16x float32 copy of the
# matrix (11 GB for the bench's 262144 x 640 head): MXFP4 gets random sane blocks like the IQ types.
GGUF_QUANTIZES = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0)
QUANTIZED = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS)
FLOATS = (T.F32, T.F16, T.BF16)
# make_data's types that gguf (or a NumPy cast) produces from floats; the others get random bytes.
QUANTIZABLE = (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0)
BLOCK_TYPES = tuple(F16_FIELDS)
ALL_TYPES = (T.F32, T.F16, T.BF16, *BLOCK_TYPES)
LEGACY_TYPES = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL)  # 32-weight blocks
K_TYPES = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS)  # 256-weight super-blocks
# The grid, ternary and MXFP4 formats (kernels.dequant_iq). Kept out of the lists above, whose
# tests run every type many times over (the CUDA simulator's above all): tests/test_*_iq.py
# cover them with fewer, smaller cases. gguf cannot quantize the IQ ones: random sane blocks
# (MXFP4 too, see GGUF_QUANTIZES; TQ1_0 and TQ2_0 gguf quantizes).
IQ_TYPES = (T.IQ1_S, T.IQ1_M, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.TQ1_0, T.TQ2_0, T.MXFP4)
# Their float16 scale fields. IQ1_M splits its d over the top nibbles of four uint16 (bytes
# 48..55); MXFP4 has an exponent byte instead (a half h there means byte = float32 exponent of h).
IQ_F16_FIELDS = {
    T.IQ1_S: (0,), T.IQ2_XXS: (0,), T.IQ2_XS: (0,), T.IQ2_S: (0,), T.IQ3_XXS: (0,), T.IQ3_S: (0,),
    T.TQ1_0: (52,), T.TQ2_0: (64,),
}

EXTREME_F16 = {
    "max": 0x7BFF,  # 65504, the largest finite half
    "-max": 0xFBFF,
    "min_subnormal": 0x0001,  # 2**-24
    "-min_subnormal": 0x8001,
    "max_subnormal": 0x03FF,
    "min_normal": 0x0400,
    "zero": 0x0000,
    "-zero": 0x8000,
}


def reference(data: np.ndarray, qtype: T) -> np.ndarray:
    """gguf.quants.dequantize(data, qtype): float32 (*leading, elements_per_row)."""
    with np.errstate(all="ignore"):  # gguf warns on NaN * 0 and the like
        return gguf.quants.dequantize(data, qtype)


def row_bytes(qtype: T, blocks_per_row: int) -> int:
    return blocks_per_row * GGML_QUANT_SIZES[qtype][1]


def random_matrix(qtype: T, n: int, k: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """GGUF bytes (n, row_bytes) uint8 of an (n, k) matrix of type qtype."""
    bsz, tsz = GGML_QUANT_SIZES[qtype]
    vals = (rng.standard_normal((n, k)) * scale).astype(np.float32)
    if qtype == T.F32:
        return vals.view(np.uint8)
    if qtype == T.F16:
        return vals.astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        return (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    if qtype in GGUF_QUANTIZES:
        return quantize(vals, qtype)
    blocks = rng.integers(0, 256, (n * (k // bsz), tsz), dtype=np.uint8)
    if qtype in IQ_TYPES:  # one scale field each (IQ1_M's split, MXFP4's exponent byte)
        d = (rng.uniform(0.5, 2.0, blocks.shape[0]) * 1e-2 * scale).astype(np.float16)
        set_f16_fields(blocks, qtype, d.view(np.uint8).reshape(-1, 2))
    for off in F16_FIELDS.get(qtype, ()):
        d = (rng.uniform(0.5, 2.0, blocks.shape[0]) * 1e-2 * scale).astype(np.float16)
        blocks[:, off : off + 2] = d.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(n, -1)


def coarse_scales(data: np.ndarray, qtype: T) -> np.ndarray:
    """data with every float16 scale field cut to 3 significant bits, in place; returns data.

    Why: sub-block scales (d times a sub-scale of at most 8 bits) then fit a float16 exactly,
    so a kernel that stores them as halves (kernels.packing) holds gguf's values unrounded.
    """
    blocks = data.reshape(-1, GGML_QUANT_SIZES[qtype][1])
    if qtype == T.IQ1_M:
        set_f16_fields(blocks, qtype, (_iq1m_halves(blocks) & np.uint16(0xFF00)).view(np.uint8).reshape(-1, 2))
    for off in _fields(qtype):  # MXFP4 scales are powers of two already
        half = np.ascontiguousarray(blocks[:, off : off + 2]).view(np.uint16)
        blocks[:, off : off + 2] = (half & np.uint16(0xFF00)).view(np.uint8)
    return data


def f16_scales(rng: np.random.Generator, n: int) -> np.ndarray:
    """n finite float16 scales of realistic size (1e-4 .. 1e-1, either sign), as uint8 pairs."""
    mag = 10.0 ** rng.uniform(-4, -1, size=n)
    sign = rng.choice([-1.0, 1.0], size=n)
    return (mag * sign).astype(np.float16).view(np.uint8).reshape(n, 2)


def _fields(qtype: T) -> tuple[int, ...]:
    return F16_FIELDS.get(qtype) or IQ_F16_FIELDS.get(qtype, ())


def _iq1m_halves(blocks: np.ndarray) -> np.ndarray:
    """IQ1_M's d of each block (n_blocks,) as float16 bits: bits 12..15 of its four uint16."""
    sc = np.ascontiguousarray(blocks[:, 48:56]).view("<u2").astype(np.uint16)
    return ((sc >> np.uint16(12)) << np.array([0, 4, 8, 12], np.uint16)).sum(axis=1).astype(np.uint16)


def set_f16_fields(data: np.ndarray, qtype: T, values: np.ndarray) -> None:
    """Write uint8 pairs values (n_blocks, 2), or one pair for all, into every f16 field
    (IQ1_M: its split d; MXFP4: the exponent byte of the half's float32 value, see IQ_F16_FIELDS)."""
    blocks = data.reshape(-1, GGML_QUANT_SIZES[qtype][1])
    halves = np.broadcast_to(np.ascontiguousarray(values).reshape(-1, 2), (blocks.shape[0], 2))
    h = np.ascontiguousarray(halves).view("<u2").reshape(-1).astype(np.uint16)
    if qtype == T.IQ1_M:
        sc = np.ascontiguousarray(blocks[:, 48:56]).view("<u2").astype(np.uint16)
        nib = (h[:, None] >> np.array([0, 4, 8, 12], np.uint16)) & np.uint16(15)
        blocks[:, 48:56] = ((sc & np.uint16(0x0FFF)) | (nib << np.uint16(12))).astype("<u2").view(np.uint8)
    elif qtype == T.MXFP4:
        f = np.abs(h.view(np.float16).astype(np.float32))
        blocks[:, 0] = ((f.view(np.uint32) >> np.uint32(23)) & np.uint32(255)).astype(np.uint8)
    for off in _fields(qtype):
        blocks[:, off : off + 2] = values


def make_data(rng: np.random.Generator, qtype: T, leading: tuple, blocks_per_row: int):
    """uint8 tensor (*leading, row bytes): gguf-quantized floats, else random sane blocks."""
    block_size, _ = GGML_QUANT_SIZES[qtype]
    if qtype in QUANTIZABLE:
        floats = rng.standard_normal((*leading, blocks_per_row * block_size)).astype(np.float32)
        floats *= np.float32(0.05)
        if qtype == T.F32:
            return floats.view(np.uint8)
        if qtype == T.F16:
            return floats.astype(np.float16).view(np.uint8)
        return gguf.quants.quantize(floats, qtype)
    data = rng.integers(0, 256, size=(*leading, row_bytes(qtype, blocks_per_row)), dtype=np.uint8)
    set_f16_fields(data, qtype, f16_scales(rng, data.size // GGML_QUANT_SIZES[qtype][1]))
    return data


def assert_same_bits(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """float32 arrays equal bit for bit (NaN payloads and signed zeros included)."""
    assert got.dtype == np.float32 and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    bad = got.view(np.uint32) != want.view(np.uint32)
    assert not bad.any(), (what, np.flatnonzero(bad)[:8], got[bad][:4], want[bad][:4])


BLOCK_CASES = ("quantized", "random_bytes", "extreme_scales")


def block_case(case: str, qtype: T, rng: np.random.Generator, n_blocks: int) -> np.ndarray:
    """uint8 (n_blocks, type_size) of one kind: sane (make_data), every byte random (NaN, inf
    and subnormal scales too), or random codes under one EXTREME_F16 half per block."""
    if case == "quantized":
        return make_data(rng, qtype, (n_blocks,), 1)
    data = rng.integers(0, 256, (n_blocks, GGML_QUANT_SIZES[qtype][1]), dtype=np.uint8)
    if case == "extreme_scales":
        bits = rng.choice(np.array(list(EXTREME_F16.values()), np.uint16), size=n_blocks)
        set_f16_fields(data, qtype, bits.view(np.uint8).reshape(n_blocks, 2))
    return data
