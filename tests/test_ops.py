"""The float32 transformer kernels against their float64 NumPy oracles (tests/oracle_ops.py).

Tolerances, and why:
- fast_exp: relative error <= 4e-7 (a few float32 ulps; the bound its docstring states).
- Elementwise activations: one exp (4e-7) plus a handful of float32 roundings (6e-8 each):
  rtol 2e-6. GELU's oracle is the tanh form, which loses relative precision in float64 where
  1 + tanh(u) underflows, so it also gets atol 1e-12 (its values there are below 1e-15).
  Softmax also rounds x - max to float32 first, which moves exp's argument by up to
  6e-8 * |x - max|: rtol 2e-6 + 6e-8 * |x - max|.
- In-place calls run other loops than out-of-place ones, with the same arithmetic: equal.
- RMSNorm: a float64 sum, then three float32 roundings per element: rtol 1e-6.
- RoPE: the same float32 angles as ggml, float32 cos/sin (1 ulp) and one multiply-add per
  output: abs error <= 4e-7 * |pair|, asserted as 1e-6 * max|x|.
- Attention: float32 dots over head_dim add ~sqrt(head_dim) * 6e-8 * |q||k| to each score,
  which (with the exp's 4e-7) is the relative error of each probability; the output is a
  convex combination of values, so its error is below ~1e-5 * max|v| for these inputs:
  asserted as 3e-5 * max|v|.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels import activation as A
from kernels.attention import attention, new_scratch
from kernels.fastexp import fast_exp, fast_sigmoid, fast_tanh
from kernels.norm import rms_norm
from kernels.rope import rope, rope_apply, rope_cache
from kernels._jit import kernel
from tests import oracle_ops as O

SETTINGS = settings(deadline=None, max_examples=25)


def _f32(rng, *shape, scale=1.0):
    return np.ascontiguousarray(rng.standard_normal(shape) * scale, dtype=np.float32)


@kernel
def _map_exp(out, x, which):
    """out = fast_exp / fast_sigmoid / fast_tanh (which = 0 / 1 / 2) of x, elementwise."""
    for i in range(x.shape[0]):
        if which == 0:
            out[i] = fast_exp(x[i])
        elif which == 1:
            out[i] = fast_sigmoid(x[i])
        else:
            out[i] = fast_tanh(x[i])


def _map(x, which):
    out = np.empty_like(x)
    _map_exp(out, x, which)
    return out


# ---------------------------------------------------------------- exp and friends


def test_fast_exp_relative_error_bound():
    # Every 331st float32 bit pattern in [0, 88] and in [-87, 0]: about 6.7 million values.
    pos = np.arange(0, np.float32(88.0).view(np.int32), 331, dtype=np.int32).view(np.float32)
    neg = -np.arange(0, np.float32(87.0).view(np.int32), 331, dtype=np.int32).view(np.float32)
    x = np.concatenate([neg, pos, np.float32([-87.0, 88.0, 0.0, 1e-30, -1e-30])])
    rel = np.abs(_map(x, 0) - np.exp(x.astype(np.float64))) / np.exp(x.astype(np.float64))
    assert rel.max() <= 4e-7, (rel.max(), x[rel.argmax()])
    assert _map(np.float32([0.0]), 0)[0] == 1.0  # exact: a query seeing one key gets p = 1


def test_fast_exp_clamps_instead_of_overflowing():
    y = _map(np.float32([-1e4, -100.0, 100.0, 1e4]), 0)
    assert np.all(np.isfinite(y)) and y[0] < 2e-38 and y[1] < 2e-38 and y[2] > 1e38


def test_fast_sigmoid_and_tanh():
    x = np.linspace(-60, 60, 200_001, dtype=np.float32)
    x64 = x.astype(np.float64)
    sig = 1.0 / (1.0 + np.exp(-x64))
    assert np.max(np.abs(_map(x, 1) - sig) / sig) <= 1e-6
    assert np.max(np.abs(_map(x, 2) - np.tanh(x64))) <= 5e-7
    t = _map(np.float32([-0.0, 0.0, 1e-8, -1e-8]), 2)
    assert np.all(np.abs(t) <= 1e-6)


# ---------------------------------------------------------------- RMSNorm


@SETTINGS
@given(n_rows=st.integers(1, 9), n=st.sampled_from([1, 3, 64, 576, 2048]), seed=st.integers(0, 2**16))
def test_rms_norm(n_rows, n, seed):
    rng = np.random.default_rng(seed)
    x = _f32(rng, n_rows, n, scale=rng.uniform(0.01, 100))
    w = _f32(rng, n)
    out = np.empty_like(x)
    rms_norm(out, x, w, 1e-6)
    np.testing.assert_allclose(out, O.rms_norm(x, w, 1e-6), rtol=1e-6, atol=1e-30)
    rms_norm(x, x, w, 1e-6)  # in place
    np.testing.assert_array_equal(x, out)


def test_rms_norm_eps_dominates_zero_rows():
    x = np.zeros((2, 8), np.float32)
    out = np.ones_like(x)
    rms_norm(out, x, np.ones(8, np.float32), 1e-5)
    assert np.all(out == 0)


# ---------------------------------------------------------------- activations


@SETTINGS
@given(n_rows=st.integers(1, 5), n=st.integers(1, 300), scale=st.sampled_from([0.1, 3.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_activations(n_rows, n, scale, seed):
    rng = np.random.default_rng(seed)
    g = _f32(rng, n_rows, n, scale=scale)
    u = _f32(rng, n_rows, n)
    out = np.empty_like(g)
    A.silu(out, g)
    np.testing.assert_allclose(out, O.silu(g), rtol=2e-6, atol=1e-30)
    A.gelu_tanh(out, g)
    np.testing.assert_allclose(out, O.gelu_tanh(g), rtol=2e-6, atol=1e-12)
    A.swiglu(out, g, u)
    np.testing.assert_allclose(out, O.swiglu(g, u), rtol=2e-6, atol=1e-30)
    A.geglu(out, g, u)
    np.testing.assert_allclose(out, O.geglu(g, u), rtol=2e-6, atol=1e-12)
    A.softmax(out, g)
    # x - max is rounded to float32 first: exp's argument is off by up to 6e-8 * |x - max|.
    ref = O.softmax(g)
    spread = g.max(axis=1, keepdims=True) - g.astype(np.float64)
    assert np.all(np.abs(out - ref) <= (2e-6 + 6e-8 * spread) * ref + 1e-30)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_activations_in_place_equal_out_of_place():
    rng = np.random.default_rng(4)
    g, u = _f32(rng, 3, 1000, scale=4.0), _f32(rng, 3, 1000)
    for fn in (A.silu, A.gelu_tanh, A.softmax):
        ref = np.empty_like(g)
        fn(ref, g)
        y = g.copy()
        fn(y, y)
        np.testing.assert_array_equal(y, ref)
    for fn in (A.swiglu, A.geglu):
        ref = np.empty_like(g)
        fn(ref, g, u)
        y, w = g.copy(), u.copy()
        fn(y, y, u)  # out is gate
        fn(w, g, w)  # out is up
        np.testing.assert_array_equal(y, ref)
        np.testing.assert_array_equal(w, ref)


def test_activations_extremes():
    x = np.float32([[-1e4, -90.0, -20.0, -1.0, 0.0, 1.0, 20.0, 90.0, 1e4]])
    for fn, ref in ((A.silu, O.silu), (A.gelu_tanh, O.gelu_tanh)):
        y = np.empty_like(x)
        fn(y, x)
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y, ref(x), rtol=2e-6, atol=1e-12)
    s = np.float32([[1e4, 0.0, -1e4, 1e4]])  # huge spread: no overflow, ties split evenly
    A.softmax(s, s)
    np.testing.assert_allclose(s, [[0.5, 0.0, 0.0, 0.5]], atol=1e-30)


# ---------------------------------------------------------------- RoPE

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


# ---------------------------------------------------------------- attention


def _attn_case(rng, n_kv, n_rep, head_dim, n_tokens, pos0, extra_kv=0, n_ctx=None):
    kv_len = pos0 + n_tokens + extra_kv
    n_ctx = n_ctx or kv_len + 3
    q = _f32(rng, n_tokens, n_kv * n_rep, head_dim)
    k = _f32(rng, n_kv, n_ctx, head_dim)
    v = _f32(rng, n_kv, n_ctx, head_dim)
    pos = np.arange(pos0, pos0 + n_tokens, dtype=np.int32)
    return q, k, v, pos, kv_len


def _run_attention(q, k, v, pos, kv_len, scale, window, softcap, n_lanes=0):
    out = np.full_like(q, np.nan)
    attention(out, q, k, v, pos, kv_len, scale, window, softcap, new_scratch(k.shape[1], k.shape[2], n_lanes))
    return out


def _check_attention(out, q, k, v, pos, kv_len, scale, window, softcap):
    ref = O.attention(q, k, v, pos, kv_len, scale, window, softcap)
    np.testing.assert_allclose(out, ref, rtol=0, atol=3e-5 * np.abs(v).max())


@SETTINGS
@given(n_kv=st.integers(1, 3), n_rep=st.sampled_from([1, 3, 4]), head_dim=st.sampled_from([64, 96, 128, 256]),
       n_tokens=st.integers(1, 40), pos0=st.integers(0, 70), extra_kv=st.integers(0, 5),
       window=st.sampled_from([0, 1, 4, 16, 1000]), softcap=st.sampled_from([0.0, 5.0, 50.0]),
       n_lanes=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_attention_matches_oracle(n_kv, n_rep, head_dim, n_tokens, pos0, extra_kv, window, softcap, n_lanes, seed):
    rng = np.random.default_rng(seed)
    q, k, v, pos, kv_len = _attn_case(rng, n_kv, n_rep, head_dim, n_tokens, pos0, extra_kv)
    scale = 4.0 / np.sqrt(head_dim)  # sharper than usual, so the mask and softcap matter
    out = _run_attention(q, k, v, pos, kv_len, scale, window, softcap, n_lanes)
    _check_attention(out, q, k, v, pos, kv_len, scale, window, softcap)


@pytest.mark.parametrize("n_rep,head_dim", [(1, 64), (3, 64), (4, 128), (3, 256)])
def test_attention_prefill_then_decode_agree(n_rep, head_dim):
    rng = np.random.default_rng(n_rep * head_dim)
    q, k, v, pos, kv_len = _attn_case(rng, 2, n_rep, head_dim, 300, 0, n_ctx=512)
    scale = 1.0 / np.sqrt(head_dim)
    for window, softcap in ((0, 0.0), (64, 0.0), (0, 30.0)):
        full = _run_attention(q, k, v, pos, kv_len, scale, window, softcap)
        _check_attention(full, q, k, v, pos, kv_len, scale, window, softcap)
        for p in (0, 1, 63, 64, 65, 299):  # decode: one token at p, cache filled up to p
            one = _run_attention(q[p:p + 1], k, v, pos[p:p + 1], p + 1, scale, window, softcap)
            np.testing.assert_allclose(one[0], full[p], rtol=0, atol=1e-6 * np.abs(v).max())


def test_attention_long_decode():
    rng = np.random.default_rng(7)
    q, k, v, pos, kv_len = _attn_case(rng, 3, 3, 64, 1, 4000)
    for window in (0, 512):
        out = _run_attention(q, k, v, pos, kv_len, 0.125, window, 0.0)
        _check_attention(out, q, k, v, pos, kv_len, 0.125, window, 0.0)


def test_attention_single_visible_key_returns_its_value():
    rng = np.random.default_rng(8)
    q, k, v, pos, kv_len = _attn_case(rng, 2, 3, 64, 10, 5)
    out = _run_attention(q * 100, k, v, pos, kv_len, 1.0, 1, 0.0)  # window 1: only itself
    for t, p in enumerate(pos):
        for h in range(6):
            np.testing.assert_array_equal(out[t, h], v[h // 3, p])
    out = _run_attention(q[:1], k, v, np.int32([0]), 7, 0.1, 0, 0.0)  # position 0: key 0 only
    np.testing.assert_array_equal(out[0], v[[0, 0, 0, 1, 1, 1], 0])


@SETTINGS
@given(n_rep=st.sampled_from([1, 3, 4]), n_tokens=st.integers(2, 24), kv_len=st.integers(0, 40),
       window=st.sampled_from([0, 3, 9]), seed=st.integers(0, 2**16))
def test_attention_arbitrary_positions(n_rep, n_tokens, kv_len, window, seed):
    # Positions in any order, repeated, or past the cache: each query still sees exactly its keys.
    rng = np.random.default_rng(seed)
    q, k, v, _, _ = _attn_case(rng, 2, n_rep, 64, n_tokens, 0, n_ctx=48)
    pos = rng.integers(0, 60, n_tokens).astype(np.int32)
    out = _run_attention(q, k, v, pos, kv_len, 0.3, window, 0.0)
    _check_attention(out, q, k, v, pos, kv_len, 0.3, window, 0.0)


def test_attention_strided_cache_takes_the_per_head_path():
    rng = np.random.default_rng(10)
    q, k, v, pos, kv_len = _attn_case(rng, 2, 4, 64, 20, 10)
    k2 = np.zeros((2, k.shape[1], 128), np.float32)  # rows 512 bytes apart: not tileable
    v2 = np.zeros_like(k2)
    k2[:, :, :64], v2[:, :, :64] = k, v
    out = _run_attention(q, k2[:, :, :64], v2[:, :, :64], pos, kv_len, 0.125, 0, 0.0)
    _check_attention(out, q, k, v, pos, kv_len, 0.125, 0, 0.0)


def test_attention_no_visible_key_gives_zeros_and_lanes_do_not_matter():
    rng = np.random.default_rng(9)
    q, k, v, pos, kv_len = _attn_case(rng, 1, 4, 128, 3, 20)
    out = _run_attention(q, k, v, pos, 0, 0.1, 0, 0.0)  # empty cache
    assert np.all(out == 0)
    out = _run_attention(q, k, v, pos, 10, 0.1, 4, 0.0)  # the window starts past the cache end
    assert np.all(out == 0)
    ref = _run_attention(q, k, v, pos, kv_len, 0.1, 0, 0.0, n_lanes=1)
    for lanes in (2, 3, 12):  # each output is computed the same way whatever lane owns it
        np.testing.assert_array_equal(_run_attention(q, k, v, pos, kv_len, 0.1, 0, 0.0, lanes), ref)


def test_attention_rejects_bad_sizes():
    q = np.zeros((1, 4, 64), np.float32)
    k = np.zeros((3, 10, 64), np.float32)
    with pytest.raises(ValueError):  # 4 heads over 3 kv heads
        attention(np.empty_like(q), q, k, k, np.int32([3]), 5, 0.1, 0, 0.0, new_scratch(10, 64))
    with pytest.raises(ValueError):  # kv_len beyond the cache
        attention(np.empty_like(q), q, k[:2], k[:2], np.int32([3]), 11, 0.1, 0, 0.0, new_scratch(10, 64))
