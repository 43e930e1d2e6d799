"""CUDA attention (decode, batched decode and prefill kernels) against the CPU twin.

(The KV-cache store is part of kernels.cuda.heads, tested in test_cuda_heads.py; the tile sizes
of kernels.cuda.launch in test_cuda_launch.py.)

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Shapes are small: the simulator runs each thread as a Python thread.
"""

import numpy as np
import pytest

from kernels import attention as cpu
from kernels.cuda import attention as gpu
from kernels.cuda import launch
from tests.oracles.cuda import dev, host

RNG = np.random.default_rng(11)


def _case(n_tokens, n_head, n_kv, hd, n_ctx, p0):
    """Random q and cache; the batch sits at positions p0.. after p0 earlier cached keys."""
    q = RNG.standard_normal((n_tokens, n_head, hd)).astype(np.float32)
    k = RNG.standard_normal((n_kv, n_ctx, hd)).astype(np.float32)
    v = RNG.standard_normal((n_kv, n_ctx, hd)).astype(np.float32)
    q_pos = np.arange(p0, p0 + n_tokens, dtype=np.int32)
    return q, k, v, q_pos


def _cpu(q, k, v, q_pos, kv_len, scale, window, softcap):
    out = np.empty_like(q)
    cpu.attention(out, q, k, v, q_pos, kv_len, scale, window, softcap, np.zeros(0, np.float32),
                  cpu.new_scratch(k.shape[1], q.shape[2], 2))
    return out


def _gpu(q, k, v, q_pos, kv_len, scale, window, softcap, prefill):
    d_out = dev(np.full_like(q, np.nan))  # every element must be written
    scratch = gpu.new_scratch(q.shape[0], q.shape[1], k.shape[1])
    gpu.attention(d_out, dev(q), dev(k), dev(v), dev(q_pos), kv_len, scale, window, softcap, scratch, prefill=prefill)
    return host(d_out)


CASES = [  # n_tokens, n_head, n_kv, hd, n_ctx, p0, window, softcap
    (1, 4, 2, 16, 24, 17, 0, 0.0),  # decode after 17 cached positions, GQA 2:1
    (2, 4, 2, 8, 24, 9, 5, 0.0),  # sliding window shorter than the context
    (3, 2, 2, 16, 20, 4, 0, 5.0),  # soft-cap, no GQA
    (3, 4, 1, 8, 16, 0, 2, 3.0),  # window and soft-cap, 4 heads on one kv head, from position 0
]


@pytest.mark.parametrize("prefill", [False, True], ids=["decode", "prefill"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "t{}h{}kv{}d{}p{}w{}c{}".format(*c[:4], *c[5:]))
def test_attention_matches_cpu(case, prefill):
    n_tokens, n_head, n_kv, hd, n_ctx, p0, window, softcap = case
    q, k, v, q_pos = _case(n_tokens, n_head, n_kv, hd, n_ctx, p0)
    kv_len = p0 + n_tokens
    scale = 1.0 / np.sqrt(hd)
    want = _cpu(q, k, v, q_pos, kv_len, scale, window, softcap)
    got = _gpu(q, k, v, q_pos, kv_len, scale, window, softcap, prefill)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_prefill_spans_several_key_tiles_and_query_tiles():
    """More keys than one staged tile and more (token, head) lanes than one block: the online
    softmax rescales across tiles; the default choice takes the prefill kernel here."""
    bq, bk = launch.prefill_tiles(8)
    n_tokens = max(launch.ATTN_PREFILL_MIN_TOKENS, bq + 1)
    p0 = 2 * bk + 3 - n_tokens
    assert p0 > 0 and n_tokens * 2 > bq
    q, k, v, q_pos = _case(n_tokens, 4, 2, 8, p0 + n_tokens + 2, p0)
    kv_len = p0 + n_tokens
    want = _cpu(q, k, v, q_pos, kv_len, 0.3, 0, 0.0)
    got = _gpu(q, k, v, q_pos, kv_len, 0.3, 0, 0.0, None)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prefill", [False, True], ids=["decode", "prefill"])
def test_wide_head_and_unseen_queries(prefill):
    """head_dim 32 >= the simulator's block (threads over dims, no key groups); a query whose
    position lies past kv_len sees only the cache, one before every key sees nothing -> zeros."""
    q, k, v, _ = _case(2, 2, 1, 32, 12, 0)
    q_pos = np.array([20, -1], np.int32)
    want = _cpu(q, k, v, q_pos, 10, 0.2, 0, 0.0)
    got = _gpu(q, k, v, q_pos, 10, 0.2, 0, 0.0, prefill)
    assert np.all(got[1] == 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_large_scores_do_not_overflow():
    """Scores in the hundreds: the max subtraction keeps every exp finite on both paths."""
    q, k, v, q_pos = _case(2, 2, 2, 8, 8, 3)
    q *= 40.0
    want = _cpu(q, k, v, q_pos, 5, 1.0, 0, 0.0)
    for prefill in (False, True):
        np.testing.assert_allclose(_gpu(q, k, v, q_pos, 5, 1.0, 0, 0.0, prefill), want, rtol=1e-5, atol=1e-6)


def test_bad_shapes_are_value_errors():
    q, k, v, q_pos = _case(1, 3, 2, 8, 8, 0)
    with pytest.raises(ValueError):
        _gpu(q, k, v, q_pos, 1, 1.0, 0, 0.0, False)  # 3 heads on 2 kv heads
    q, k, v, q_pos = _case(1, 2, 2, 8, 8, 0)
    with pytest.raises(ValueError):
        _gpu(q, k, v, q_pos, 9, 1.0, 0, 0.0, False)  # kv_len > n_ctx
    with pytest.raises(ValueError, match="scratch"):
        gpu.attention(dev(q), dev(q), dev(k), dev(v), dev(q_pos), 8, 1.0, 0, 0.0, gpu.new_scratch(1, 2, 4),
                      prefill=False)


@pytest.mark.parametrize("window,softcap", [(0, 0.0), (3, 4.0)])
def test_batch_decode_over_several_sequences(window, softcap):
    """One launch for decode tokens of different sequences (and positions) = the CPU per sequence."""
    n_seq, n_head, n_kv, hd, n_ctx = 3, 4, 2, 8, 12
    k = RNG.standard_normal((n_seq, n_kv, n_ctx, hd)).astype(np.float32)
    v = RNG.standard_normal((n_seq, n_kv, n_ctx, hd)).astype(np.float32)
    seq, q_pos = np.array([2, 0, 1], np.int32), np.array([7, 0, 11], np.int32)
    q = RNG.standard_normal((3, n_head, hd)).astype(np.float32)
    want = np.concatenate([_cpu(q[t:t + 1], k[seq[t]], v[seq[t]], q_pos[t:t + 1], int(q_pos[t]) + 1, 0.35, window,
                                softcap) for t in range(3)])
    d_out = dev(np.full_like(q, np.nan))
    gpu.attention_batch(d_out, dev(q), dev(k), dev(v), dev(seq), dev(q_pos), 0.35, window, softcap,
                        gpu.new_scratch(3, n_head, n_ctx))
    np.testing.assert_allclose(host(d_out), want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- cache types


def _typed_dev(rows, t):
    """Device rows of cache type t from host storage rows, and their float16 view (kernels.cuda.kv)."""
    from kernels import kv_types as kt

    d = dev(rows.view(np.float16) if t == kt.F16 else rows)
    return d, (d.view(np.float16) if kt.is_quantized(t) else None)


@pytest.mark.parametrize("tk,tv", [("q8_0", "q8_0"), ("f16", "q4_1"), ("bf16", "iq4_nl"), ("q5_0", "f32")])
def test_typed_caches_match_the_cpu(tk, tv):
    """Decode, prefill and batched decode over caches of the cache types = kernels.attention_kv."""
    from kernels import kv_types as kt
    from kernels.attention_kv import attention_kv
    from kernels.kv_dequant import cache_ref
    from kernels.kv_quant import quantize_rows

    tk, tv = kt.type_id(tk), kt.type_id(tv)
    n_tokens, n_head, n_kv, hd, n_ctx, p0 = 3, 4, 2, 32, 12, 6
    q, k, v, q_pos = _case(n_tokens, n_head, n_kv, hd, n_ctx, p0)
    ks, vs = quantize_rows(k, tk), quantize_rows(v, tv)
    want = np.empty_like(q)
    attention_kv(want, q, cache_ref(tk, ks), cache_ref(tv, vs), q_pos, p0 + n_tokens, 0.3, 4, 0.0,
                 np.zeros(0, np.float32), cpu.new_scratch(n_ctx, hd, 2))
    (dk, dkh), (dv, dvh) = _typed_dev(ks, tk), _typed_dev(vs, tv)
    for prefill in (False, True):
        d_out = dev(np.full_like(q, np.nan))
        gpu.attention(d_out, dev(q), dk, dv, dev(q_pos), p0 + n_tokens, 0.3, 4, 0.0,
                      gpu.new_scratch(n_tokens, n_head, n_ctx), prefill=prefill, types=(tk, tv), halves=(dkh, dvh))
        np.testing.assert_allclose(host(d_out), want, rtol=1e-5, atol=1e-6)
    # the last token as a batched decode of a 2-sequence cache whose sequence 1 is this one
    (bk, bkh), (bv, bvh) = _typed_dev(np.stack([ks, ks]), tk), _typed_dev(np.stack([vs, vs]), tv)
    d_out = dev(np.full_like(q[-1:], np.nan))
    gpu.attention_batch(d_out, dev(q[-1:]), bk, bv, dev(np.array([1], np.int32)), dev(q_pos[-1:]), 0.3, 4, 0.0,
                        gpu.new_scratch(1, n_head, n_ctx), types=(tk, tv), halves=(bkh, bvh))
    np.testing.assert_allclose(host(d_out), want[-1:], rtol=1e-5, atol=1e-6)
