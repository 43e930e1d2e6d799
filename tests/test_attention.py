"""kernels/attention.py: causal GQA attention (windows, soft-cap, tiles and lanes) against its float64 oracle.

Tolerance: float32 dots over head_dim add ~sqrt(head_dim) * 6e-8 * |q||k| to each score,
which (with the exp's 4e-7) is the relative error of each probability; the output is a
convex combination of values, so its error is below ~1e-5 * max|v| for these inputs:
asserted as 3e-5 * max|v|.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels.attention import attention, new_scratch
from tests.oracles import ops as O
from tests.oracles.ops import f32_normal as _f32

SETTINGS = settings(deadline=None, max_examples=25)
NO_SINKS = np.zeros(0, np.float32)


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
    attention(out, q, k, v, pos, kv_len, scale, window, softcap, NO_SINKS, new_scratch(k.shape[1], k.shape[2], n_lanes))
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
        attention(np.empty_like(q), q, k, k, np.int32([3]), 5, 0.1, 0, 0.0, NO_SINKS, new_scratch(10, 64))
    with pytest.raises(ValueError):  # kv_len beyond the cache
        attention(np.empty_like(q), q, k[:2], k[:2], np.int32([3]), 11, 0.1, 0, 0.0, NO_SINKS, new_scratch(10, 64))


def _sinks_oracle(q, k, v, pos, kv_len, scale, window, sinks):
    """O.attention with head h's softmax denominator counting exp(sinks[h]) too, in float64."""
    q64, k64 = np.asarray(q, np.float64), np.repeat(np.asarray(k, np.float64)[:, :kv_len], q.shape[1] // k.shape[0], 0)
    s = np.einsum("thd,hjd->thj", q64, k64) * scale
    j = np.arange(kv_len)[None, :]
    vis = j <= pos[:, None].astype(np.int64)
    if window > 0:
        vis &= (pos[:, None] - j) < window
    s = np.where(vis[:, None, :], s, -np.inf)
    lse = np.logaddexp.reduce(s, axis=2)  # (n_tokens, n_head)
    return O.attention(q, k, v, pos, kv_len, scale, window, 0.0) / (1 + np.exp(sinks[None, :] - lse))[:, :, None]


@pytest.mark.parametrize("n_tokens,window", [(20, 0), (20, 6), (1, 0)])
def test_sinks_join_the_softmax(n_tokens, window):
    """gpt-oss's sinks (one logit per head) shrink every head's weights by S / (S + exp(sink)), on the
    tiled prefill path and the one-query path, and through typed caches (kernels.attention_kv)."""
    from kernels import kv_types as kt
    from kernels.attention_kv import attention_kv
    from kernels.kv_dequant import cache_ref
    from kernels.kv_quant import dequantize_rows, quantize_rows

    rng = np.random.default_rng(11)
    q, k, v, pos, kv_len = _attn_case(rng, 2, 4, 64, n_tokens, 9)
    sinks = (1.0 + rng.standard_normal(8)).astype(np.float32)
    out = np.full_like(q, np.nan)
    attention(out, q, k, v, pos, kv_len, 0.2, window, 0.0, sinks, new_scratch(k.shape[1], 64, 2))
    ref = _sinks_oracle(q, k, v, pos, kv_len, 0.2, window, sinks.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=0, atol=3e-5 * np.abs(v).max())
    assert np.abs(out - _run_attention(q, k, v, pos, kv_len, 0.2, window, 0.0)).max() > 1e-2  # they bite
    kf = quantize_rows(k, kt.F16)
    typed = np.full_like(q, np.nan)
    attention_kv(typed, q, cache_ref(kt.F16, kf), cache_ref(kt.F32, v), pos, kv_len, 0.2, window, 0.0, sinks,
                 new_scratch(k.shape[1], 64, 2))
    ref = _sinks_oracle(q, dequantize_rows(kf, kt.F16), v, pos, kv_len, 0.2, window, sinks.astype(np.float64))
    np.testing.assert_allclose(typed, ref, rtol=0, atol=3e-5 * np.abs(v).max())
