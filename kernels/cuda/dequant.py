"""CUDA dequantization: GGML tensors (uint8 rows) to float32, bit-exact with gguf.

Mirrors kernels.dequant (same types, same results, same ValueErrors). This module holds the
entry points, the element formats (F32, F16, BF16) and the 32-weight formats (Q4_0, Q4_1,
Q5_0, Q5_1, Q8_0, IQ4_NL); kernels.cuda.dequant_k holds the 256-weight super-block formats,
kernels.cuda.dequant_iq the grid (IQ1/IQ2/IQ3), ternary (TQ) and MXFP4 formats.

Kernel design: one thread per output weight, in a grid-stride loop over the flat output.
Consecutive threads write consecutive floats (coalesced stores, the bulk of the traffic), and
the 32 threads of a warp read the same block header (one broadcast load). Every kernel
repeats gguf.quants' float32 operations in the same order; a product that feeds an add or a
subtract goes through kernels.cuda.exact.mul so that NVVM cannot fuse it into an FMA.

Convention: outputs first, then inputs, then sizes. Block kernels take out (n,) float32,
src (n_blocks * type_size,) uint8 and h, the same bytes viewed as float16 (every f16 field
sits at an even byte offset of an even-sized block, so the half at byte k is h[k // 2]:
numba.cuda has no scalar bit reinterpretation, and float16 -> float32 is exact).
Bytes are widened with np.int32 before any arithmetic: the simulator keeps NumPy's uint8
arithmetic, where 3 - 8 would wrap.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from numba import cuda

from kernels._jit import cuda_exact_device, cuda_exact_kernel
from kernels.cuda import dequant_iq as _iq
from kernels.cuda import dequant_k as _k
from kernels.cuda import launch
from kernels.cuda.exact import mul
from kernels.dequant_legacy import IQ4_LEVELS

Q = GGMLQuantizationType
_LEVELS = IQ4_LEVELS  # (16,) float32, a module global: numba.cuda freezes it as a constant array

# ---------------------------------------------------------------------------------------------
# Element formats. They write float32 bits through a uint32 view of out: copies and shifts
# move bits exactly (and keep NaN payloads, which GPU float arithmetic would not).


@cuda_exact_kernel
def _f32(out_bits, src_bits, n):
    """F32: out_bits[i] = src_bits[i]; (n,) uint32 both (the bytes already are the floats)."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out_bits[i] = src_bits[i]


@cuda_exact_device
def _half_bits(half):
    """float32 bits (int64) of the IEEE half with bits half, as NumPy converts it (payload kept)."""
    hb = np.int64(half)  # int64 throughout: no overflow, and no mixed-signedness float promotion
    sign = (hb & 0x8000) << 16
    mag = hb & 0x7FFF
    if mag >= 0x7C00:  # inf / NaN: exponent all ones, mantissa moved up
        return sign | 0x7F800000 | ((mag & 0x3FF) << 13)
    if mag >= 0x0400:  # normal: only the exponent bias changes (15 -> 127)
        return sign | ((mag << 13) + (112 << 23))
    if mag == 0:
        return sign
    # Subnormal m * 2**-24: normalise (bit 10 set after e shifts), a normal float32.
    e = 0
    while mag < 0x0400:
        mag <<= 1
        e += 1
    return sign | ((113 - e) << 23) | ((mag & 0x3FF) << 13)


@cuda_exact_kernel
def _f16(out_bits, src16, n):
    """F16: out_bits[i] = float32 bits of half src16[i]; (n,) uint32, (n,) uint16."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out_bits[i] = _half_bits(src16[i])


@cuda_exact_kernel
def _bf16(out_bits, src16, n):
    """BF16: out_bits[i] = src16[i] << 16 (bf16 is the top half of a float32); (n,) u32, u16."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out_bits[i] = np.int64(src16[i]) << 16


# ---------------------------------------------------------------------------------------------
# 32-weight blocks. Weight j of a block: quant byte j % 16, low nibble for j < 16, high after.


@cuda_exact_kernel
def _q4_0(out, src, h, n):
    """Q4_0: out = d * (q4 - 8); blocks of 18 bytes = f16 d | 16 quant bytes."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, j = (i // 32) * 18, i % 32
        q = (np.int32(src[o + 2 + j % 16]) >> (4 * (j // 16))) & 15
        out[i] = np.float32(h[o // 2]) * np.float32(q - 8)


@cuda_exact_kernel
def _q4_1(out, src, h, n):
    """Q4_1: out = d * q4 + m; blocks of 20 bytes = f16 d | f16 m | 16 quant bytes."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, j = (i // 32) * 20, i % 32
        q = (np.int32(src[o + 4 + j % 16]) >> (4 * (j // 16))) & 15
        out[i] = mul(np.float32(h[o // 2]), np.float32(q)) + np.float32(h[o // 2 + 1])


@cuda_exact_device
def _q5(src, qh, qs, j):
    """5-bit quant j of a Q5 block: nibble from bytes qs.., bit 4 = bit j of the u32 at qh."""
    lo = (np.int32(src[qs + j % 16]) >> (4 * (j // 16))) & 15
    hi = (np.int32(src[qh + j // 8]) >> (j % 8)) & 1  # little-endian u32: bit j in byte j // 8
    return lo | (hi << 4)


@cuda_exact_kernel
def _q5_0(out, src, h, n):
    """Q5_0: out = d * (q5 - 16); blocks of 22 bytes = f16 d | u32 high bits | 16 quant bytes."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, j = (i // 32) * 22, i % 32
        out[i] = np.float32(h[o // 2]) * np.float32(_q5(src, o + 2, o + 6, j) - 16)


@cuda_exact_kernel
def _q5_1(out, src, h, n):
    """Q5_1: out = d * q5 + m; blocks of 24 bytes = f16 d | f16 m | u32 high bits | 16 bytes."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, j = (i // 32) * 24, i % 32
        q = np.float32(_q5(src, o + 4, o + 8, j))
        out[i] = mul(np.float32(h[o // 2]), q) + np.float32(h[o // 2 + 1])


@cuda_exact_kernel
def _q8_0(out, src, h, n):
    """Q8_0: out = int8 * d; blocks of 34 bytes = f16 d | 32 int8."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, j = (i // 32) * 34, i % 32
        v = np.int32(src[o + 2 + j])
        out[i] = np.float32(v - ((v & 128) << 1)) * np.float32(h[o // 2])  # sign-extend the byte


@cuda_exact_kernel
def _iq4_nl(out, src, h, n):
    """IQ4_NL: out = d * levels[q4]; blocks of 18 bytes = f16 d | 16 quant bytes."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o, j = (i // 32) * 18, i % 32
        q = (np.int32(src[o + 2 + j % 16]) >> (4 * (j // 16))) & 15
        out[i] = np.float32(h[o // 2]) * _LEVELS[q]


# ---------------------------------------------------------------------------------------------
# Entry points.


def _elements(kernel, view):
    """Runner for an element format: kernel(out as uint32, src viewed as `view`, n)."""

    def run(out, src, n):
        grid, block = launch.elementwise(n)
        kernel[grid, block](out.view(np.uint32), src.view(view), n)

    return run


def _blocks(kernel):
    """Runner for a block format: kernel(out, src, src viewed as float16, n)."""

    def run(out, src, n):
        grid, block = launch.elementwise(n)
        kernel[grid, block](out, src, src.view(np.float16), n)

    return run


# qtype -> run(out (n,) float32, src (n_bytes,) uint8, n): flat, C-contiguous device arrays.
_RUNNERS: dict[GGMLQuantizationType, Callable] = {
    Q.F32: _elements(_f32, np.uint32),
    Q.F16: _elements(_f16, np.uint16),
    Q.BF16: _elements(_bf16, np.uint16),
    Q.Q4_0: _blocks(_q4_0),
    Q.Q4_1: _blocks(_q4_1),
    Q.Q5_0: _blocks(_q5_0),
    Q.Q5_1: _blocks(_q5_1),
    Q.Q8_0: _blocks(_q8_0),
    Q.IQ4_NL: _blocks(_iq4_nl),
    Q.Q2_K: _blocks(_k.q2_k),
    Q.Q3_K: _blocks(_k.q3_k),
    Q.Q4_K: _blocks(_k.q4_k),
    Q.Q5_K: _blocks(_k.q5_k),
    Q.Q6_K: _blocks(_k.q6_k),
    Q.IQ4_XS: _blocks(_k.iq4_xs),
    **_iq.RUNNERS,  # IQ1_S .. IQ3_S, TQ1_0, TQ2_0, MXFP4
}


def supported_types() -> tuple[GGMLQuantizationType, ...]:
    """The GGML types dequantize() and dequantize_device() accept (as kernels.dequant)."""
    return tuple(_RUNNERS)


def _checked_type(qtype) -> GGMLQuantizationType:
    """qtype as a supported GGMLQuantizationType, else kernels.dequant's ValueError."""
    try:
        qtype = GGMLQuantizationType(int(qtype))
    except (TypeError, ValueError):
        raise ValueError(f"dequantize: {qtype!r} is not a GGML quantization type") from None
    if qtype not in _RUNNERS:
        names = ", ".join(t.name for t in _RUNNERS)
        raise ValueError(f"dequantize: type {qtype.name} is not supported (supported: {names})")
    return qtype


def _check_row_bytes(qtype: GGMLQuantizationType, row_bytes: int) -> None:
    type_size = GGML_QUANT_SIZES[qtype][1]
    if row_bytes % type_size != 0:
        raise ValueError(
            f"dequantize: {qtype.name} rows have {row_bytes} bytes, "
            f"not a multiple of its type size {type_size}"
        )


def dequantize_device(out, src, qtype) -> None:
    """Dequantize device bytes src into the caller's device float32 array out; no host copies.

    src: uint8 (*leading, row_bytes), C-contiguous. out: float32, C-contiguous, of any shape
    holding n_blocks * block_size elements (usually (*leading, elements_per_row)).
    Raises ValueError for an unsupported qtype, a bad row length, or a mismatched out.
    """
    qtype = _checked_type(qtype)
    shape = tuple(src.shape)  # a plain tuple: the simulator's shape refuses negative indices
    if src.dtype != np.uint8 or not shape or not src.is_c_contiguous():
        raise ValueError("dequantize: src must be a C-contiguous uint8 array with a row axis")
    _check_row_bytes(qtype, shape[-1])
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n = src.size // type_size * block_size
    if out.dtype != np.float32 or out.size != n or not out.is_c_contiguous():
        raise ValueError(
            f"dequantize: out must be a C-contiguous float32 array of {n} elements, "
            f"not {out.dtype} of shape {tuple(out.shape)}"
        )
    if n:
        _RUNNERS[qtype](out.reshape(n), src.reshape(src.size), n)


def dequantize(data: np.ndarray, qtype) -> np.ndarray:
    """float32 (*leading, elements_per_row) from GGML bytes (*leading, bytes_per_row), on the GPU.

    kernels.dequant.dequantize's signature, result (bit for bit) and ValueErrors: uploads data,
    runs dequantize_device, downloads the result. data of another dtype is read as its bytes.
    """
    qtype = _checked_type(qtype)
    rows = np.asarray(data)
    if rows.ndim == 0:
        raise ValueError("dequantize: data must have at least one axis (the bytes of a row)")
    rows = np.ascontiguousarray(rows).view(np.uint8)
    _check_row_bytes(qtype, rows.shape[-1])
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    shape = (*rows.shape[:-1], rows.shape[-1] // type_size * block_size)
    if rows.size == 0:
        return np.empty(shape, dtype=np.float32)
    out = cuda.device_array(shape, dtype=np.float32)
    dequantize_device(out, cuda.to_device(rows), qtype)
    return out.copy_to_host()
