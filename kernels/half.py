"""Scalar IEEE half <-> float32 conversions as Numba intrinsics (LLVM fpext / fptrunc).

Numba has no float16 type on the CPU; halves travel as their uint16 bits. These lower to
one conversion instruction (F16C's vcvtph2ps / vcvtps2ph, 16 lanes at a time when a loop
vectorizes) and are exact: fptrunc rounds to nearest even, with subnormals, overflow to inf
and NaN as NumPy's astype(np.float16) gives them (a NaN's payload aside).
bfloat16 needs no intrinsic: it is the top half of a float32 (kernels.kv_quant).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

_i16, _half, _f32 = ir.IntType(16), ir.HalfType(), ir.FloatType()


@intrinsic
def half_to_f32(typingctx, h):
    """float32 value of the half whose bits are h (any integer type; the low 16 bits count)."""
    if not isinstance(h, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        bits = context.cast(builder, args[0], h, types.uint16)
        return builder.fpext(builder.bitcast(bits, _half), _f32)

    return types.float32(h), codegen


@intrinsic
def f32_to_half(typingctx, x):
    """uint16 bits of x (a float32) rounded to the nearest half, ties to even."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[0], x, types.float32)
        return builder.bitcast(builder.fptrunc(v, _half), _i16)

    return types.uint16(x), codegen
