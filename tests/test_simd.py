"""kernels.simd's vector intrinsics against NumPy, lane by lane.

dpbusd is checked on both of its code paths: the AVX-512 VNNI instruction (where the host
has it) and the generic LLVM vector IR, selected in-process by compiling a fresh function
while kernels._jit.has_vnni512 answers False (the choice is made when a kernel is compiled),
and in a subprocess compiled for an AVX2 CPU, where the whole matmul must still be right.
Integer results are exact; float ones get a few float32 roundings (rtol 1e-6).
"""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from kernels import _jit, simd

RNG = np.random.default_rng(17)


def _dot_kernel():
    """A new compilation of dpbusd(dpbusd(0, a0, b0), a, b) as float32 (so the path is chosen again)."""

    @numba.njit(cache=False)
    def dot(out, a0, b0, a, b):
        v = simd.dpbusd(simd.zeros_i32(), simd.load_u8x64(a0, 0), simd.load_u8x64(b0, 0))
        v = simd.dpbusd(v, simd.load_u8x64(a, 0), simd.load_u8x64(b, 0))
        one = simd.load_f32x16(np.ones(16, np.float32), 0)
        simd.store_f32x16(out, 0, simd.scale_add(simd.zeros_f32(), v, one, 1.0, simd.zeros_f32(), 0.0), 16)

    return dot


def _idot(a, b):
    """Lane i: sum_{j<4} a[4i+j] * b[4i+j] in int64, a uint8, b int8."""
    return (a.astype(np.int64) * b.astype(np.int64)).reshape(16, 4).sum(1)


def _check_dot(dot):
    a0, b0 = RNG.integers(0, 256, 64, dtype=np.uint8), RNG.integers(-128, 128, 64, dtype=np.int8)
    cases = [(np.full(64, 255, np.uint8), np.full(64, -128, np.int8)),  # the largest products
             (np.arange(64, dtype=np.uint8), (np.arange(64) - 32).astype(np.int8)),
             (RNG.integers(0, 256, 64, dtype=np.uint8), RNG.integers(-128, 128, 64, dtype=np.int8))]
    for a, b in cases:
        out = np.zeros(16, np.float32)
        dot(out, a0, b0.view(np.uint8), a, b.view(np.uint8))
        np.testing.assert_array_equal(out, _idot(a0, b0) + _idot(a, b))  # |sums| < 2^24: exact in float32


@pytest.mark.parametrize("vnni", [True, False], ids=["vnni", "generic"])
def test_dpbusd_is_an_unsigned_by_signed_byte_dot(vnni, monkeypatch):
    if vnni and not _jit.has_vnni512():
        pytest.skip("host has no AVX-512 VNNI")
    monkeypatch.setattr(_jit, "has_vnni512", lambda: vnni)
    dot = _dot_kernel()
    _check_dot(dot)
    if vnni:  # the generic IR may or may not be matched to the instruction by LLVM: no claim
        assert "vpdpbusd" in "".join(dot.inspect_asm().values())


@numba.njit(cache=False)
def _bytes(out, a, h, shift, mask, off):
    """out[0:64] = low nibbles, [64:128] high nibbles, [128:192] with_high_bits, [192:256] bcast of a[off:off+4]."""
    v = simd.load_u8x64(a, 0)
    simd.store_u8x64(out, 0, simd.low_nibbles(v))
    simd.store_u8x64(out, 64, simd.high_nibbles(v))
    simd.store_u8x64(out, 128, simd.with_high_bits(simd.low_nibbles(v), simd.load_u8x64(h, 0), shift, mask))
    simd.store_u8x64(out, 192, simd.bcast_i32(a, off))


@pytest.mark.parametrize("shift,mask", [(0, 1), (5, 1), (7, 1), (2, 3), (6, 3)])
def test_nibbles_high_bits_and_broadcast(shift, mask):
    a = RNG.integers(0, 256, 80, dtype=np.uint8)
    h = RNG.integers(0, 256, 64, dtype=np.uint8)
    out = np.zeros(256, np.uint8)
    _bytes(out, a, h, shift, mask, 9)
    lo, hi = a[:64] & 15, a[:64] >> 4
    np.testing.assert_array_equal(out[:64], lo)
    np.testing.assert_array_equal(out[64:128], hi)
    np.testing.assert_array_equal(out[128:192], lo | (((h >> shift) & mask) << 4))
    np.testing.assert_array_equal(out[192:], np.tile(a[9:13], 16))


@numba.njit(cache=False)
def _widen(out, src, off, count):
    simd.store_f32x16(out, 0, simd.load_f32x16(src, off), count)


@pytest.mark.parametrize("kind", ["f32", "f16", "bf16"])
def test_load_widens_by_dtype_and_store_writes_count_lanes(kind):
    x = RNG.standard_normal(40).astype(np.float32) * 100
    if kind == "f32":
        src, want = x, x
    elif kind == "f16":
        src, want = x.astype(np.float16).view(np.uint16), x.astype(np.float16).astype(np.float32)
    else:  # bfloat16: the high half of a float32
        src = (x.view(np.uint32) >> 16).astype(np.uint16).view(np.int16)
        want = (src.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    for count in (16, 5, 0):
        out = np.full(20, -7.0, np.float32)
        _widen(out, src, 3, count)
        np.testing.assert_array_equal(out[:count], want[3:3 + count])  # widening is exact
        assert np.all(out[count:] == -7.0)  # masked lanes and what follows stay untouched


@numba.njit(cache=False)
def _scale(out, a, b, d, dx, m, sx, w, x, i):
    """out = out + float(dpbusd(a, b)) * d * dx + m * sx, then + w * x[i]."""
    isum = simd.dpbusd(simd.zeros_i32(), simd.load_u8x64(a, 0), simd.load_u8x64(b, 0))
    v = simd.scale_add(simd.load_f32x16(out, 0), isum, simd.load_f32x16(d, 0), dx, simd.load_f32x16(m, 0), sx)
    simd.store_f32x16(out, 0, simd.fma_bcast(v, simd.load_f32x16(w, 0), x, i), 16)


def test_scale_add_and_fma_bcast():
    a, b = RNG.integers(0, 256, 64, dtype=np.uint8), RNG.integers(-128, 128, 64, dtype=np.int8)
    acc, d, m, w = (RNG.standard_normal(16).astype(np.float32) for _ in range(4))
    x = RNG.standard_normal(8).astype(np.float32)
    dx, sx = np.float32(0.0123), np.float32(-2.5)
    out = acc.copy()
    _scale(out, a, b.view(np.uint8), d, dx, m, sx, w, x, 5)
    f = np.float64
    terms = [f(acc), _idot(a, b) * f(d) * f(dx), f(m) * f(sx), f(w) * f(x[5])]
    # each term rounds a few times in float32 (FMA contraction allowed): 1e-6 of their magnitudes
    np.testing.assert_array_less(np.abs(out - sum(terms)), 1e-6 * sum(np.abs(t) for t in terms) + 1e-30)


FALLBACK = """
import numpy as np
from kernels import _jit
assert not _jit.has_vnni512(), _jit.cpu_features()
from kernels.matmul import matmul, pack
from tests.oracles.matmul import check_matmul
from tests.oracles.quant_blocks import FLOATS, QUANTIZED, random_matrix
rng = np.random.default_rng(7)
for qt in QUANTIZED + FLOATS:
    data = random_matrix(qt, 33, 256, rng)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    check_matmul(matmul(np.zeros((5, 33), np.float32), x, pack(data, qt, 33, 256)), data, qt, x)
print("fallback ok")
"""


def test_fallback_path_without_vnni():
    """The generic-vector path, compiled for an AVX2 CPU (no AVX-512 VNNI), in a subprocess."""
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", FALLBACK], env=env, cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fallback ok" in out.stdout


def test_vnni_path_is_used_on_this_host():
    """On an AVX-512 VNNI host, simd.dpbusd compiles to the vpdpbusd instruction."""
    if "+avx512vnni" not in _jit.cpu_features():
        pytest.skip("host has no AVX-512 VNNI")

    @numba.njit(cache=False)
    def dot(out, a, b):
        v = simd.dpbusd(simd.zeros_i32(), simd.load_u8x64(a, 0), simd.load_u8x64(b, 0))
        ones = simd.load_f32x16(np.ones(16, np.float32), 0)
        simd.store_f32x16(out, 0, simd.scale_add(simd.zeros_f32(), v, ones, 1.0, simd.zeros_f32(), 0.0), 16)

    a = np.arange(64, dtype=np.uint8)
    b = (np.arange(64) - 32).astype(np.int8)
    out = np.zeros(16, np.float32)
    dot(out, a, b)
    np.testing.assert_array_equal(out, (a.astype(np.int64) * b).reshape(16, 4).sum(1))
    assert "vpdpbusd" in "".join(dot.inspect_asm().values())
