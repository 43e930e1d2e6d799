"""Dequantization entry point: GGML tensors (uint8 rows) to float32, bit-exact with gguf.

dequantize(data, qtype) has the signature and the result of gguf.quants.dequantize: the last
axis of data holds the bytes of a row, any leading shape is kept, and the result is float32 of
shape (*leading, elements_per_row). Block and type sizes come from gguf.GGML_QUANT_SIZES.
The kernels live in dequant_legacy (float and 32-weight formats), dequant_k (super-blocks) and
dequant_iq (grid, ternary and MXFP4 formats; their tables in iq_grids).
"""

from typing import Callable

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from kernels import dequant_iq as _iq
from kernels import dequant_k as _k
from kernels import dequant_legacy as _legacy
from kernels import iq_grids as _g

Q = GGMLQuantizationType


def _f32(out, blocks):
    """F32: the bytes already are the floats; copy them so the result owns its memory."""
    np.copyto(out.reshape(-1).view(np.uint8), blocks.reshape(-1))


def _f16(out, blocks):
    _legacy.dequant_f16(out.reshape(-1).view(np.uint32), blocks.reshape(-1).view(np.uint16))


def _bf16(out, blocks):
    _legacy.dequant_bf16(out.reshape(-1).view(np.uint32), blocks.reshape(-1).view(np.uint16))


def _bind(kernel, *inputs):
    """kernel(out, blocks, *inputs): the extra inputs and sizes a block kernel takes last.

    The sizes are inner trip counts, passed at run time on purpose (see dequant_legacy).
    """

    def run(out, blocks):
        kernel(out, blocks, *inputs)

    return run


_LEVELS = _legacy.IQ4_LEVELS

# qtype -> fn(out (n_blocks, block_size) float32, blocks (n_blocks, type_size) uint8).
# The trailing 16 / 32 are the kernels' inner trip counts (n16 / n32), not format sizes.
_KERNELS: dict[GGMLQuantizationType, Callable[[np.ndarray, np.ndarray], None]] = {
    Q.F32: _f32,
    Q.F16: _f16,
    Q.BF16: _bf16,
    Q.Q4_0: _bind(_legacy.dequant_q4_0, 16),
    Q.Q4_1: _bind(_legacy.dequant_q4_1, 16),
    Q.Q5_0: _bind(_legacy.dequant_q5_0, 16),
    Q.Q5_1: _bind(_legacy.dequant_q5_1, 16),
    Q.Q8_0: _bind(_legacy.dequant_q8_0, 16),
    Q.IQ4_NL: _bind(_legacy.dequant_iq4_nl, _LEVELS, 16),
    Q.Q2_K: _bind(_k.dequant_q2_k, 16),
    Q.Q3_K: _bind(_k.dequant_q3_k, 16),
    Q.Q4_K: _bind(_k.dequant_q4_k, 32),
    Q.Q5_K: _bind(_k.dequant_q5_k, 32),
    Q.Q6_K: _bind(_k.dequant_q6_k, 16),
    Q.IQ4_XS: _bind(_k.dequant_iq4_xs, _LEVELS, 16),
    Q.IQ1_S: _bind(_iq.dequant_iq1_s, _g.IQ1_GRID, _g.IQ1_DELTA),
    Q.IQ1_M: _bind(_iq.dequant_iq1_m, _g.IQ1_GRID, _g.IQ1_DELTA),
    Q.IQ2_XXS: _bind(_iq.dequant_iq2_xxs, _g.IQ2_XXS_GRID, _g.KSIGNS),
    Q.IQ2_XS: _bind(_iq.dequant_iq2_xs, _g.IQ2_XS_GRID, _g.KSIGNS),
    Q.IQ2_S: _bind(_iq.dequant_iq2_s, _g.IQ2_S_GRID),
    Q.IQ3_XXS: _bind(_iq.dequant_iq3_xxs, _g.IQ3_XXS_GRID, _g.KSIGNS),
    Q.IQ3_S: _bind(_iq.dequant_iq3_s, _g.IQ3_S_GRID),
    Q.TQ1_0: _bind(_iq.dequant_tq1_0),
    Q.TQ2_0: _bind(_iq.dequant_tq2_0),
    Q.MXFP4: _bind(_iq.dequant_mxfp4, _g.E8M0_HALF, _g.E2M1_DOUBLED),
}


def supported_types() -> tuple[GGMLQuantizationType, ...]:
    """The GGML types dequantize() accepts."""
    return tuple(_KERNELS)


def _as_qtype(qtype) -> GGMLQuantizationType:
    try:
        return GGMLQuantizationType(int(qtype))
    except (TypeError, ValueError):
        raise ValueError(f"dequantize: {qtype!r} is not a GGML quantization type") from None


def dequantize(data: np.ndarray, qtype: GGMLQuantizationType | int) -> np.ndarray:
    """float32 (*leading, elements_per_row) from GGML bytes (*leading, bytes_per_row).

    Bit-identical to gguf.quants.dequantize. data of another dtype is read as its bytes.
    Raises ValueError for an unsupported qtype or a row length not a multiple of the type size.
    """
    qtype = _as_qtype(qtype)
    run = _KERNELS.get(qtype)
    if run is None:
        names = ", ".join(t.name for t in _KERNELS)
        raise ValueError(f"dequantize: type {qtype.name} is not supported (supported: {names})")
    rows = np.asarray(data)
    if rows.ndim == 0:
        raise ValueError("dequantize: data must have at least one axis (the bytes of a row)")
    rows = np.ascontiguousarray(rows).view(np.uint8)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    row_bytes = rows.shape[-1]
    if row_bytes % type_size != 0:
        raise ValueError(
            f"dequantize: {qtype.name} rows have {row_bytes} bytes, "
            f"not a multiple of its type size {type_size}"
        )
    n_blocks = rows.size // type_size
    out = np.empty((*rows.shape[:-1], row_bytes // type_size * block_size), dtype=np.float32)
    if n_blocks:
        run(out.reshape(n_blocks, block_size), rows.reshape(n_blocks, type_size))
    return out
