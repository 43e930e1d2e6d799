"""SIMD vectors as Numba values: a handful of LLVM vector types and the intrinsics on them.

Why: LLVM never emits AVX-512 VNNI (`vpdpbusd` on zmm registers) from plain loops, and
auto-vectorization of per-block quantized dots is fragile. Kernels written with these
intrinsics read like scalar Python but every value is a 512-bit vector.

Two code paths, chosen when a kernel is compiled (so Numba's cache, which is keyed by
the CPU name and features, keeps them apart):
- the host has AVX512-VNNI: `dpbusd` is the `llvm.x86.avx512.vpdpbusd.512` intrinsic;
- otherwise: the same arithmetic in generic LLVM vector IR (widen, multiply, add groups
  of four), which LLVM lowers to AVX2/SSE/NEON. Tests run both (the fallback under
  NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=, in a subprocess).

Values:  U8x64  <64 x i8>  (unsigned bytes, or signed bytes where said)
         I32x16 <16 x i32>
         F32x16 <16 x float>
"""

from __future__ import annotations

import llvmlite.binding as llb
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.datamodel import models, register_default
from numba.extending import intrinsic

from kernels import _jit


class Vec(types.Type):
    """A fixed-width LLVM vector held in a Numba variable (lives in a register)."""

    def __init__(self, elem: str, lanes: int):
        self.elem, self.lanes = elem, lanes
        super().__init__(name=f"Vec<{lanes}x{elem}>")


@register_default(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        elem = {"i8": ir.IntType(8), "i32": ir.IntType(32), "f32": ir.FloatType()}[fe_type.elem]
        super().__init__(dmm, fe_type, ir.VectorType(elem, fe_type.lanes))


U8x64 = Vec("i8", 64)
I32x16 = Vec("i32", 16)
F32x16 = Vec("f32", 16)

_i8, _i16, _i32, _f32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.FloatType()
_V64I8 = ir.VectorType(_i8, 64)
_V16I32 = ir.VectorType(_i32, 16)
_V16F32 = ir.VectorType(_f32, 16)
_CONTRACT = ("contract",)  # let LLVM fuse multiply-adds into FMA


def _ptr(context, builder, arr_t, arr, off_t, off, vec_t):
    """Address of arr.data[off] as a pointer to vec_t (element offset, not bytes)."""
    ary = context.make_array(arr_t)(context, builder, arr)
    off = context.cast(builder, off, off_t, types.intp)
    return builder.bitcast(builder.gep(ary.data, [off]), vec_t.as_pointer())


def _splat(builder, scalar, vec_t):
    v = builder.insert_element(ir.Constant(vec_t, ir.Undefined), scalar, ir.Constant(_i32, 0))
    zeros = ir.Constant(ir.VectorType(_i32, vec_t.count), [0] * vec_t.count)
    return builder.shuffle_vector(v, ir.Constant(vec_t, ir.Undefined), zeros)


@intrinsic
def zeros_i32(typingctx):
    """() -> I32x16 of zeros."""
    return I32x16(), lambda ctx, b, sig, args: ir.Constant(_V16I32, [0] * 16)


@intrinsic
def zeros_f32(typingctx):
    """() -> F32x16 of zeros."""
    return F32x16(), lambda ctx, b, sig, args: ir.Constant(_V16F32, [0.0] * 16)


@intrinsic
def load_u8x64(typingctx, arr, off):
    """64 bytes of a uint8/int8 array from element `off` (unaligned)."""

    def codegen(context, builder, sig, args):
        return builder.load(_ptr(context, builder, arr, args[0], off, args[1], _V64I8), align=1)

    return U8x64(arr, off), codegen


@intrinsic
def store_u8x64(typingctx, arr, off, v):
    """Store 64 bytes at element `off` of a uint8 array (unaligned)."""

    def codegen(context, builder, sig, args):
        builder.store(args[2], _ptr(context, builder, arr, args[0], off, args[1], _V64I8), align=1)
        return context.get_dummy_value()

    return types.void(arr, off, v), codegen


@intrinsic
def load_f32x16(typingctx, arr, off):
    """16 values from element `off`, widened to float32.

    Numba has no half-precision array type, so the dtype says what the bits are:
    float32 as is, uint16 holds IEEE float16 bits, int16 holds bfloat16 bits.
    """
    dt = arr.dtype

    def codegen(context, builder, sig, args):
        if dt == types.float32:
            return builder.load(_ptr(context, builder, arr, args[0], off, args[1], _V16F32), align=4)
        v = builder.load(_ptr(context, builder, arr, args[0], off, args[1], ir.VectorType(_i16, 16)), align=2)
        if dt == types.uint16:
            return builder.fpext(builder.bitcast(v, ir.VectorType(ir.HalfType(), 16)), _V16F32)
        wide = builder.shl(builder.zext(v, _V16I32), _splat(builder, ir.Constant(_i32, 16), _V16I32))
        return builder.bitcast(wide, _V16F32)  # bfloat16 is the high half of a float32

    if dt not in (types.float32, types.uint16, types.int16):
        return None
    return F32x16(arr, off), codegen


@intrinsic
def store_f32x16(typingctx, arr, off, v, count):
    """Store the first `count` (<= 16) lanes of v at element `off` of a float32 array."""

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, arr, args[0], off, args[1], _V16F32)
        cnt = builder.trunc(context.cast(builder, args[3], count, types.int64), _i32)
        lanes = ir.Constant(_V16I32, list(range(16)))
        mask = builder.icmp_unsigned("<", lanes, _splat(builder, cnt, _V16I32))
        fnty = ir.FunctionType(ir.VoidType(), [_V16F32, p.type, _i32, mask.type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.store.v16f32.p0")
        builder.call(fn, [args[2], p, ir.Constant(_i32, 4), mask])
        return context.get_dummy_value()

    return types.void(arr, off, v, count), codegen


@intrinsic
def low_nibbles(typingctx, v):
    """Each byte's low four bits (0..15)."""

    def codegen(context, builder, sig, args):
        return builder.and_(args[0], ir.Constant(_V64I8, [0x0F] * 64))

    return U8x64(v), codegen


@intrinsic
def high_nibbles(typingctx, v):
    """Each byte's high four bits (0..15)."""

    def codegen(context, builder, sig, args):
        return builder.lshr(args[0], ir.Constant(_V64I8, [4] * 64))

    return U8x64(v), codegen


@intrinsic
def with_high_bits(typingctx, w, h, shift, mask):
    """w | (((h >> shift) & mask) << 4) per byte: puts bits 4.. of codes stored in a bit plane."""

    def codegen(context, builder, sig, args):
        sh = builder.trunc(context.cast(builder, args[2], shift, types.int64), _i8)
        mk = builder.trunc(context.cast(builder, args[3], mask, types.int64), _i8)
        bits = builder.and_(builder.lshr(args[1], _splat(builder, sh, _V64I8)), _splat(builder, mk, _V64I8))
        return builder.or_(args[0], builder.shl(bits, ir.Constant(_V64I8, [4] * 64)))

    return U8x64(w, h, shift, mask), codegen


@intrinsic
def bcast_i32(typingctx, arr, off):
    """Four int8 values at element `off`, as one 32-bit word repeated in all 16 lanes."""

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, arr, args[0], off, args[1], _i32)
        word = builder.load(p, align=1)
        return builder.bitcast(_splat(builder, word, _V16I32), _V64I8)

    return U8x64(arr, off), codegen


def _dpbusd_generic(builder, acc, a, b):
    # u8 x s8 products fit int16 (255 * -128 = -32640), their pair and quad sums int32.
    v64i16, v64i32 = ir.VectorType(_i16, 64), ir.VectorType(ir.IntType(32), 64)
    prod = builder.mul(builder.zext(a, v64i16), builder.sext(b, v64i16))
    prod = builder.sext(prod, v64i32)
    out = acc
    for j in range(4):  # lane i sums products 4i .. 4i+3
        idx = ir.Constant(ir.VectorType(_i32, 16), [4 * i + j for i in range(16)])
        out = builder.add(out, builder.shuffle_vector(prod, ir.Constant(v64i32, ir.Undefined), idx))
    return out


def _dpbusd_vnni(builder, acc, a, b):
    if llb.llvm_version_info[0] >= 21:  # LLVM 21 retyped the byte operands as <64 x i8>
        fnty = ir.FunctionType(_V16I32, [_V16I32, _V64I8, _V64I8])
    else:
        fnty = ir.FunctionType(_V16I32, [_V16I32, _V16I32, _V16I32])
        a, b = builder.bitcast(a, _V16I32), builder.bitcast(b, _V16I32)
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.vpdpbusd.512")
    return builder.call(fn, [acc, a, b])


@intrinsic
def dpbusd(typingctx, acc, a, b):
    """acc[i] + sum_{j<4} a[4i+j] * b[4i+j], a unsigned bytes, b signed bytes (vpdpbusd)."""

    def codegen(context, builder, sig, args):
        impl = _dpbusd_vnni if _jit.has_vnni512() else _dpbusd_generic
        return impl(builder, *args)

    return I32x16(acc, a, b), codegen


@intrinsic
def scale_add(typingctx, acc, isum, d, dx, m, sx):
    """acc + float(isum) * d * dx + m * sx  (d, m vectors over rows; dx, sx float scalars)."""

    def codegen(context, builder, sig, args):
        acc_v, isum_v, d_v, dx_s, m_v, sx_s = args
        dx_s = context.cast(builder, dx_s, sig.args[3], types.float32)
        sx_s = context.cast(builder, sx_s, sig.args[5], types.float32)
        dd = builder.fmul(d_v, _splat(builder, dx_s, _V16F32), flags=_CONTRACT)
        acc_v = builder.fadd(acc_v, builder.fmul(m_v, _splat(builder, sx_s, _V16F32), flags=_CONTRACT),
                             flags=_CONTRACT)
        t = builder.fmul(builder.sitofp(isum_v, _V16F32), dd, flags=_CONTRACT)
        return builder.fadd(acc_v, t, flags=_CONTRACT)

    return F32x16(acc, isum, d, dx, m, sx), codegen


@intrinsic
def fma_bcast(typingctx, acc, w, arr, off):
    """acc + w * arr[off]  (a float32 scalar broadcast to all lanes)."""

    def codegen(context, builder, sig, args):
        s = builder.load(_ptr(context, builder, arr, args[2], off, args[3], _f32), align=4)
        prod = builder.fmul(args[1], _splat(builder, s, _V16F32), flags=_CONTRACT)
        return builder.fadd(args[0], prod, flags=_CONTRACT)

    return F32x16(acc, w, arr, off), codegen
