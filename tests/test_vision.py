"""kernels/vision.py against NumPy oracles written here (float64 where the kernel sums in float32).

Tolerances: float32 sums of at most a few hundred products: rtol 1e-5 (atol 1e-5 for values near 0);
im2col and pooling move values (pooling: a sum then one scale): exact / rtol 1e-6.
"""

import numpy as np
import pytest

from kernels.vision import attention_full, avg_pool_tokens, gelu_quick, im2col_patches, layer_norm, linear


def _r(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("h,w,p", [(16, 16, 8), (24, 16, 4), (8, 8, 8)])
def test_im2col_patches(h, w, p):
    rng = np.random.default_rng(1)
    img = _r(rng, 3, h, w)
    out = np.full(((h // p) * (w // p), 3 * p * p), np.nan, np.float32)
    im2col_patches(out, img, p)
    ref = img.reshape(3, h // p, p, w // p, p).transpose(1, 3, 0, 2, 4).reshape(-1, 3 * p * p)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("n,k,m,bias", [(1, 8, 3, True), (64, 192, 64, True), (16, 64, 640, False)])
def test_linear(n, k, m, bias):
    rng = np.random.default_rng(2)
    x, w = _r(rng, n, k), _r(rng, m, k, scale=0.1)
    b = _r(rng, m) if bias else np.zeros(0, np.float32)
    out = np.empty((n, m), np.float32)
    linear(out, x, w, b)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + (b if bias else 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_layer_norm_and_in_place():
    rng = np.random.default_rng(3)
    x = _r(rng, 7, 64, scale=5) + 3
    w, b = _r(rng, 64), _r(rng, 64)
    out = np.empty_like(x)
    layer_norm(out, x, w, b, 1e-6)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-6) * w + b
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    layer_norm(x, x, w, b, 1e-6)
    np.testing.assert_allclose(x, out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n,h,d", [(1, 1, 4), (64, 4, 16), (9, 2, 8)])
def test_attention_full_is_non_causal(n, h, d):
    rng = np.random.default_rng(4)
    q, k, v = _r(rng, n, h, d), _r(rng, n, h, d), _r(rng, n, h, d)
    out = np.empty_like(q)
    scale = np.float32(1 / np.sqrt(d))
    attention_full(out, q, k, v, np.zeros((n, n), np.float32), scale)
    s = np.einsum("thd,jhd->htj", q.astype(np.float64), k.astype(np.float64)) * scale
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = np.einsum("htj,jhd->thd", p, v.astype(np.float64))  # every query sees every key, later ones too
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side,kern", [(8, 2), (8, 4), (6, 3), (4, 1)])
def test_avg_pool_tokens(side, kern):
    rng = np.random.default_rng(5)
    x = _r(rng, side * side, 5)
    so = side // kern
    out = np.empty((so * so, 5), np.float32)
    avg_pool_tokens(out, x, side, kern)
    ref = x.astype(np.float64).reshape(so, kern, so, kern, 5).mean((1, 3)).reshape(so * so, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_gelu_quick_and_in_place():
    rng = np.random.default_rng(6)
    x = _r(rng, 5, 130, scale=4)
    x[0, :4] = [0.0, -80.0, 80.0, 1e-3]  # exp under- and overflow stay finite
    out = np.empty_like(x)
    gelu_quick(out, x)
    x64 = x.astype(np.float64)
    ref = x64 / (1 + np.exp(-1.702 * x64))
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-7)
    gelu_quick(x, x)  # in place: another loop (no vectorization behind an overlap check), the same values
    np.testing.assert_allclose(x, out, rtol=1e-6, atol=1e-30)
