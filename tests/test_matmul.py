"""Quantized matrix products against the oracle dequantize(W) @ x, for every type.

Tolerance, a proven bound rather than a guess: activations are quantized to int8 per
32 values with step dx = amax / 127, so each value's error is at most dx / 2 and a block's
error vector e_b has ||e_b|| <= sqrt(32) * amax / 254 <= 0.0223 ||x_b||. By Cauchy-Schwarz
|y_err[t, i]| <= ||w_i|| * ||e_t|| <= 0.0223 * ||w_i|| * ||x_t||. Scales stored as float16 add
at most 2^-11 relative per weight (5e-4). We assert |err| <= 0.025 ||w_i|| ||x_t||; typical
errors are ten times smaller (about 0.5% of max |y|, as llama.cpp's Q8 activations give).
Float weights are summed in float32: 1e-5 of the same scale.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from gguf.quants import dequantize
from hypothesis import given, settings, strategies as st

from kernels.matmul import Activations, matmul, pack
from tests.quant_blocks import FLOATS, QUANTIZED, random_matrix

ALL = FLOATS + QUANTIZED


def _dequant(data, qtype):
    return dequantize(data, qtype).reshape(data.shape[0], -1).astype(np.float64)


def _check(y, data, qtype, x):
    """Assert the error bound of the module docstring, element by element."""
    w = _dequant(data, qtype)
    ref = x.astype(np.float64) @ w.T
    scale = np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w, axis=1)[None, :]
    tol = 1e-5 if qtype in FLOATS else 0.025
    assert np.all(np.abs(y - ref) <= tol * scale + 1e-30), np.max(np.abs(y - ref) / (scale + 1e-30))


@pytest.mark.parametrize("qtype", ALL, ids=lambda t: t.name)
@pytest.mark.parametrize("n_tokens", [1, 3, 4, 9])
def test_matmul_matches_dequantized_oracle(qtype, n_tokens):
    rng = np.random.default_rng(int(qtype) * 100 + n_tokens)
    n, k = 45, 512  # 45 rows: two full 16-row groups and a ragged one
    data = random_matrix(qtype, n, k, rng)
    x = rng.standard_normal((n_tokens, k)).astype(np.float32)
    y = matmul(np.full((n_tokens, n), np.nan, np.float32), x, pack(data, qtype, n, k))
    _check(y, data, qtype, x)


@settings(max_examples=25, deadline=None)
@given(
    qtype=st.sampled_from(ALL),
    n=st.integers(1, 70),
    blocks=st.integers(1, 3),
    n_tokens=st.integers(1, 13),
    seed=st.integers(0, 2**31),
)
def test_matmul_shapes(qtype, n, blocks, n_tokens, seed):
    rng = np.random.default_rng(seed)
    k = 256 * blocks
    data = random_matrix(qtype, n, k, rng)
    x = rng.standard_normal((n_tokens, k)).astype(np.float32)
    act = Activations(n_tokens + 2, k).set(x)  # a buffer larger than needed is fine
    y = matmul(np.zeros((n_tokens, n), np.float32), act, pack(data, qtype, n, k))
    _check(y, data, qtype, x)


def test_zero_activations_give_zero():
    rng = np.random.default_rng(1)
    data = random_matrix(QUANTIZED[0], 16, 64, rng)
    y = matmul(np.ones((2, 16), np.float32), np.zeros((2, 64), np.float32), pack(data, QUANTIZED[0], 16, 64))
    assert not y.any()


def test_shape_errors():
    rng = np.random.default_rng(2)
    qt = QUANTIZED[0]
    w = pack(random_matrix(qt, 16, 64, rng), qt, 16, 64)
    with pytest.raises(ValueError):
        matmul(np.zeros((1, 15), np.float32), np.zeros((1, 64), np.float32), w)
    with pytest.raises(ValueError):
        pack(random_matrix(qt, 16, 64, rng)[:, :-1], qt, 16, 64)
    with pytest.raises(ValueError):
        Activations(4, 48)


FALLBACK = """
import numpy as np
from kernels import _jit
assert not _jit.has_vnni512(), _jit.cpu_features()
from kernels.matmul import matmul, pack
from tests.quant_blocks import FLOATS, QUANTIZED, random_matrix
from tests.test_matmul import _check
rng = np.random.default_rng(7)
for qt in QUANTIZED + FLOATS:
    data = random_matrix(qt, 33, 256, rng)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    _check(matmul(np.zeros((5, 33), np.float32), x, pack(data, qt, 33, 256)), data, qt, x)
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
    import numba

    from kernels import _jit, simd

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
