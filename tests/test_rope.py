"""kernels/rope.py: RoPE (one-off, cached table, NeoX and normal orderings) against its float64 oracle.

Tolerance: the same float32 angles as ggml, float32 cos/sin (1 ulp) and one multiply-add per
output: abs error <= 4e-7 * |pair|, asserted as 1e-6 * max|x|.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels.rope import rope, rope_apply, rope_cache, yarn_corr_dims
from tests.oracles import ops as O
from tests.oracles.ops import f32_normal as _f32

SETTINGS = settings(deadline=None, max_examples=25)

_ROPE_SHAPE = dict(
    n_tokens=st.integers(1, 7), n_heads=st.integers(1, 4), head_dim=st.sampled_from([2, 8, 64, 128, 256]),
    rot_frac=st.sampled_from([1.0, 0.5, 0.25]), pos0=st.integers(0, 5000),
    freq_base=st.sampled_from([10000.0, 500000.0, 1000000.0]), freq_scale=st.sampled_from([1.0, 0.25, 0.125]),
    neox=st.booleans(), seed=st.integers(0, 2**16),
)


@SETTINGS
@given(**_ROPE_SHAPE)
def test_rope_matches_ggml_angles(n_tokens, n_heads, head_dim, rot_frac, pos0, freq_base, freq_scale, neox, seed):
    rng = np.random.default_rng(seed)
    n_dims = max(2, int(head_dim * rot_frac) // 2 * 2)
    x = _f32(rng, n_tokens, n_heads, head_dim)
    pos = (pos0 + np.cumsum(rng.integers(1, 4, n_tokens))).astype(np.int32)  # not from 0, gaps
    y = x.copy()
    rope(y, pos, n_dims, freq_base, freq_scale, neox)
    ref = O.rope(x, pos, n_dims, freq_base, freq_scale, neox)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6 * np.abs(x).max())
    np.testing.assert_array_equal(y[:, :, n_dims:], x[:, :, n_dims:])  # pass-through dims
    # A rotation keeps each pair's norm.
    i0 = np.arange(n_dims // 2) if neox else 2 * np.arange(n_dims // 2)
    i1 = i0 + n_dims // 2 if neox else i0 + 1
    n_in = np.hypot(x[..., i0].astype(np.float64), x[..., i1])
    n_out = np.hypot(y[..., i0].astype(np.float64), y[..., i1])
    np.testing.assert_allclose(n_out, n_in, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("neox", [False, True])
def test_rope_exact_angles_small_positions_and_orderings(neox):
    rng = np.random.default_rng(1)
    x = _f32(rng, 5, 3, 64)
    pos = np.int32([3, 4, 5, 17, 40])
    y = x.copy()
    rope(y, pos, 48, 10000.0, 0.5, neox)
    # Against exact float64 angles: the float32 recurrence costs ~1e-6 rad at these positions.
    np.testing.assert_allclose(y, O.rope(x, pos, 48, 10000.0, 0.5, neox, ggml_float32=False), atol=2e-5)
    # The two orderings differ (unless nothing rotates).
    z = x.copy()
    rope(z, pos, 48, 10000.0, 0.5, not neox)
    assert np.abs(z - y).max() > 1e-2


@pytest.mark.parametrize("neox", [False, True])
def test_rope_position_zero_is_identity_and_scores_depend_on_distance(neox):
    rng = np.random.default_rng(2)
    q, k = _f32(rng, 1, 1, 128), _f32(rng, 1, 1, 128)
    y = q.copy()
    rope(y, np.int32([0]), 128, 10000.0, 1.0, neox)
    np.testing.assert_array_equal(y, q)
    dots = []
    for p in (0, 10, 300):  # <R(p+7) q, R(p) k> is the same for every p
        qq, kk = q.copy(), k.copy()
        rope(qq, np.int32([p + 7]), 128, 10000.0, 1.0, neox)
        rope(kk, np.int32([p]), 128, 10000.0, 1.0, neox)
        dots.append(float(qq.ravel() @ kk.ravel()))
    np.testing.assert_allclose(dots, dots[0], rtol=1e-4, atol=1e-4)


def test_rope_cache_freq_factors_and_apply():
    rng = np.random.default_rng(3)
    pos = np.int32([0, 1, 9, 1000])
    ff = rng.uniform(1.0, 8.0, 32).astype(np.float32)
    cos = np.empty((4, 32), np.float32)
    sin = np.empty((4, 32), np.float32)
    rope_cache(cos, sin, pos, 64, 500000.0, 1.0, ff)
    th = O.rope_angles(pos, 64, 500000.0, 1.0, ff)
    np.testing.assert_allclose(cos, np.cos(th), atol=2e-7)
    np.testing.assert_allclose(sin, np.sin(th), atol=2e-7)
    x = _f32(rng, 4, 2, 64)
    y = x.copy()
    rope_apply(y, cos, sin, 64, True)
    np.testing.assert_allclose(y, O.rope(x, pos, 64, 500000.0, 1.0, True, ff), atol=1e-6 * np.abs(x).max())


@SETTINGS
@given(n_dims=st.sampled_from([8, 32, 64, 128]), pos0=st.integers(0, 20000), factor=st.sampled_from([2.0, 4.0, 8.0, 32.0]),
       n_ctx_orig=st.sampled_from([64, 4096, 32768]), freq_base=st.sampled_from([10000.0, 1000000.0]),
       ff=st.booleans(), seed=st.integers(0, 2**16))
def test_rope_cache_yarn_matches_oracle(n_dims, pos0, factor, n_ctx_orig, freq_base, ff, seed):
    rng = np.random.default_rng(seed)
    pos = (pos0 + np.arange(5)).astype(np.int32)
    lo, hi = yarn_corr_dims(n_dims, n_ctx_orig, freq_base, 32.0, 1.0)
    factors = rng.uniform(1.0, 8.0, n_dims // 2).astype(np.float32) if ff else None
    cos = np.empty((5, n_dims // 2), np.float32)
    sin = np.empty((5, n_dims // 2), np.float32)
    rope_cache(cos, sin, pos, n_dims, freq_base, 1.0 / factor, factors, 1.0, 0.9, lo, hi)
    rc, rs = O.rope_yarn_table(pos, n_dims, freq_base, np.float32(1.0 / factor), factors, 1.0, 0.9, lo, hi)
    # The kernel blends the angles in float32 as ggml does (two roundings of |theta| <= pos:
    # 2 * 2^-24 * pos rad), the oracle in float64; plus cos/sin and the magnitude scale's ulps.
    tol = 2e-6 + 2.4e-7 * pos.max()
    np.testing.assert_allclose(cos, rc, atol=tol)
    np.testing.assert_allclose(sin, rs, atol=tol)


def test_yarn_corr_dims_known_values_and_ramp_ends():
    # Llama/Qwen defaults: beta_fast 32, beta_slow 1. n_dims 128, base 1e6, 32768 original tokens:
    # dim(b) = 128 ln(32768 / (2 pi b)) / (2 ln 1e6) -> 23.60 (b=32) and 39.65 (b=1).
    lo, hi = yarn_corr_dims(128, 32768, 1000000.0, 32.0, 1.0)
    assert (lo, hi) == (23.0, 40.0)
    assert yarn_corr_dims(8, 64, 10000.0, 32.0, 1.0) == (0.0, 2.0)  # floor(<0) clamps to 0
    # Below lo the pairs extrapolate (angle as without scaling); above hi they interpolate.
    pos = np.int32([1000])
    cos = np.empty((1, 64), np.float32)
    sin = np.empty((1, 64), np.float32)
    rope_cache(cos, sin, pos, 128, 1000000.0, 0.25, None, 1.0, 1.0, lo, hi)
    m = np.float32(1.0 + 0.1 * np.log(4.0))
    th = O.rope_angles(pos, 128, 1000000.0, 1.0)
    np.testing.assert_allclose(cos[0, :23], m * np.cos(th[0, :23]), atol=2e-6)
    np.testing.assert_allclose(cos[0, 40:], m * np.cos(0.25 * th[0, 40:]), atol=2e-6)
    # ext_factor 0 with mscale 1 is plain RoPE, bit for bit.
    plain = np.empty_like(cos), np.empty_like(sin)
    rope_cache(plain[0], plain[1], pos, 128, 1000000.0, 0.25)
    yc = np.empty_like(cos), np.empty_like(sin)
    rope_cache(yc[0], yc[1], pos, 128, 1000000.0, 0.25, None, 0.0, 1.0, lo, hi)
    np.testing.assert_array_equal(plain[0], yc[0])
    assert np.abs(plain[0] - cos).max() > 0.1  # and YaRN differs from it
