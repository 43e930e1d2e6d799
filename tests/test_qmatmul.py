"""kernels.qmatmul (quantize_activations, qmatmul, fmatmul) against dequantize-then-matmul in float64.

qmatmul is given the int8 activations quantize_activations made, and the oracle multiplies
the same activations (xq * dx, exact in float64) by gguf's dequantized weights. Weights have
float16-exact sub-block scales (quant_blocks.coarse_scales), so packing loses nothing and
what is left is the kernel's float32 arithmetic. The bound, derived: per 16- or 32-weight
sub-block the integer dot is exact, then at most four roundings (d * dx, the product with
the sum, m * sx and sx itself), and the running sum adds two per sub-block; each rounding
costs at most 2^-24 of the magnitudes involved, all at most
mag = sum_i (|scale| q_i + |offset|) |xq_i dx|. So |err| <= (2 nbs + 8) 2^-24 mag, nbs the
sub-blocks per row. fmatmul sums k float32 products: |err| <= (k + 4) 2^-24 |x| @ |W|.T.
"""

import numba
import numpy as np
import pytest

from kernels.packing import pack
from kernels.qmatmul import fmatmul, qmatmul, quantize_activations, quantize_activations_parallel
from kernels.unpack import to_affine
from tests.oracles.matmul import dequantized
from tests.oracles.quant_blocks import FLOATS, IQ_TYPES, QUANTIZED, coarse_scales, random_matrix

U = 2.0**-24  # float32 unit roundoff
N, K = 37, 512  # two full 16-row groups and a ragged one; 16 blocks of 32


def _activations(x):
    n, k = x.shape
    xq, dx, sx = np.zeros((n, k), np.int8), np.zeros((n, k // 32), np.float32), np.zeros((n, k // 16), np.float32)
    quantize_activations(xq, dx, sx, x)
    return xq, dx, sx


@pytest.mark.parametrize("scale", [1e-3, 1.0, 300.0])
def test_quantize_activations_per_32_absmax(scale):
    rng = np.random.default_rng(int(scale * 1000))
    x = (rng.standard_normal((5, 256)) * scale).astype(np.float32)
    x[1, 32:64] = 0.0  # an all-zero block: scale 0, codes 0
    x[2, 5] = -2 * np.abs(x[2, 0:32]).max()  # a negative maximum
    xq, dx, sx = _activations(x)
    blocks = x.astype(np.float64).reshape(5, 8, 32)
    amax = np.abs(blocks).max(axis=2)
    np.testing.assert_allclose(dx, amax / 127, rtol=2 * U, atol=0)
    q = xq.astype(np.float64).reshape(5, 8, 32)
    exact = np.divide(blocks, dx[..., None], out=np.zeros_like(blocks), where=dx[..., None] > 0)
    assert np.all(np.abs(q - exact) <= 0.5 + 1e-4)  # rounded to nearest (fast math: ties may go either way)
    assert np.abs(q).max() <= 127 and not q[1, 1].any()
    sums = q.reshape(5, 16, 16).sum(axis=2)
    np.testing.assert_allclose(sx, np.repeat(dx, 2, axis=1) * sums, rtol=U, atol=0)
    par = tuple(np.zeros_like(a) for a in (xq, dx, sx))
    quantize_activations_parallel(*par, x)
    for a, b in zip(par, (xq, dx, sx)):
        np.testing.assert_array_equal(a, b)


def _qmatmul(data, qtype, xq, dx, sx, widen):
    w = pack(data, qtype, N, K)
    lanes = numba.get_num_threads()
    wide = np.zeros((lanes, K // 32 * 512) if widen else (0, 0), np.uint8)
    y = np.full((xq.shape[0], N), np.nan, np.float32)
    qmatmul(y, xq, dx, sx, wide, w.qs, w.d, w.m, N, K, w.width, w.bs, w.sym)
    return y


@pytest.mark.parametrize("n_tok", [1, 4, 6, 9])
@pytest.mark.parametrize("qtype", QUANTIZED + IQ_TYPES, ids=lambda t: t.name)
def test_qmatmul_matches_dequantize_then_matmul(qtype, n_tok):
    rng = np.random.default_rng(int(qtype) * 10 + n_tok)
    data = coarse_scales(random_matrix(qtype, N, K, rng), qtype)
    xq, dx, sx = _activations(rng.standard_normal((n_tok, K)).astype(np.float32))
    xd = xq.astype(np.float64) * np.repeat(dx.astype(np.float64), 32, axis=1)
    ref = xd @ dequantized(data, qtype).T
    a = to_affine(data, qtype)
    terms = np.repeat(np.abs(a.scale.astype(np.float64)), a.bs, 1) * a.q + np.repeat(np.abs(a.offset), a.bs, 1)
    tol = (2 * (K // a.bs) + 8) * U * (np.abs(xd) @ terms.T)
    y = _qmatmul(data, qtype, xq, dx, sx, widen=False)
    assert np.all(np.abs(y - ref) <= tol), np.max(np.abs(y - ref) / tol)
    if n_tok >= 8:  # prefill widens packed codes to bytes first: the same arithmetic, the same bits
        np.testing.assert_array_equal(_qmatmul(data, qtype, xq, dx, sx, widen=True), y)


@pytest.mark.parametrize("n_tok", [1, 5])
@pytest.mark.parametrize("qtype", FLOATS, ids=lambda t: t.name)
def test_fmatmul_matches_float64(qtype, n_tok):
    rng = np.random.default_rng(int(qtype) + n_tok)
    data = random_matrix(qtype, N, K, rng)
    x = rng.standard_normal((n_tok, K)).astype(np.float32)
    w = dequantized(data, qtype)
    y = np.full((n_tok, N), np.nan, np.float32)
    fmatmul(y, x, pack(data, qtype, N, K).w, N, K)
    tol = (K + 4) * U * (np.abs(x.astype(np.float64)) @ np.abs(w).T)
    assert np.all(np.abs(y - x.astype(np.float64) @ w.T) <= tol)
