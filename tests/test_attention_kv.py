"""kernels/attention_kv.py: attention over caches of every type, against the float64 oracle run on
the caches' exact dequantization (so the only error is kernels.attention's float32 rounding),
through both paths (tiles of 16 queries, per (token, head)) with windows, soft-caps and keys
and values of different types; f32 caches take kernels.attention itself, bit for bit."""

import numpy as np
import pytest

from kernels import kv_types as kt
from kernels.attention import attention, new_scratch
from kernels.attention_kv import attention_kv
from kernels.kv_dequant import cache_ref
from kernels.kv_quant import dequantize_rows, quantize_rows
from tests.oracles import ops as O

NO_SINKS = np.zeros(0, np.float32)

# n_kv, n_rep, head_dim, n_tokens, pos0, window, softcap: tiles need head_dim % 64 == 0 and
# 8 or more queries per kv head; a 96-wide head and a single token take the per-head path only
CASES = [(2, 3, 64, 20, 9, 0, 0.0), (1, 4, 128, 9, 30, 12, 20.0), (3, 1, 96, 5, 40, 0, 0.0), (3, 3, 64, 1, 47, 16, 0.0)]
PAIRS = [(n, n) for n in kt.NAMES] + [("q8_0", "f16"), ("f16", "q4_0"), ("f32", "q5_1"), ("iq4_nl", "f32")]


def _case(rng, n_kv, n_rep, dim, n_tokens, pos0):
    n_ctx = pos0 + n_tokens + 2
    q = rng.standard_normal((n_tokens, n_kv * n_rep, dim)).astype(np.float32)
    k = rng.standard_normal((n_kv, n_ctx, dim)).astype(np.float32)
    v = rng.standard_normal((n_kv, n_ctx, dim)).astype(np.float32)
    return q, k, v, np.arange(pos0, pos0 + n_tokens, dtype=np.int32), pos0 + n_tokens


@pytest.mark.parametrize("tk,tv", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_typed_caches_match_the_oracle(tk, tv):
    rng = np.random.default_rng(len(tk) * 7 + len(tv))
    for n_kv, n_rep, dim, n_tokens, pos0, window, softcap in CASES:
        q, k, v, pos, kv_len = _case(rng, n_kv, n_rep, dim, n_tokens, pos0)
        ks, vs = quantize_rows(k, kt.NAMES[tk]), quantize_rows(v, kt.NAMES[tv])
        out = np.full_like(q, np.nan)
        attention_kv(out, q, cache_ref(kt.NAMES[tk], ks), cache_ref(kt.NAMES[tv], vs), pos, kv_len, 0.4, window,
                     softcap, NO_SINKS, new_scratch(k.shape[1], dim, 2))
        ref = O.attention(q, dequantize_rows(ks, kt.NAMES[tk]), dequantize_rows(vs, kt.NAMES[tv]), pos, kv_len, 0.4,
                          window, softcap)
        np.testing.assert_allclose(out, ref, rtol=0, atol=3e-5 * np.abs(v).max())


def test_f32_caches_are_kernels_attention_bit_for_bit():
    q, k, v, pos, kv_len = _case(np.random.default_rng(2), 2, 4, 64, 24, 5)
    a, b = np.empty_like(q), np.empty_like(q)
    attention(a, q, k, v, pos, kv_len, 0.3, 0, 0.0, NO_SINKS, new_scratch(k.shape[1], 64, 2))
    attention_kv(b, q, cache_ref(kt.F32, k), cache_ref(kt.F32, v), pos, kv_len, 0.3, 0, 0.0, NO_SINKS,
                 new_scratch(k.shape[1], 64, 2))
    np.testing.assert_array_equal(a, b)


def test_a_prompt_gives_the_bits_of_its_decode():
    """The last query of a call takes the per-head path, whatever the type: a prompt evaluated at
    once and the same prompt's last token decoded after the rest give the same bits (what the
    prompt cache relies on)."""
    q, k, v, pos, kv_len = _case(np.random.default_rng(5), 2, 4, 64, 30, 0)
    ks, vs = cache_ref(kt.Q8_0, quantize_rows(k, kt.Q8_0)), cache_ref(kt.F16, quantize_rows(v, kt.F16))
    full, last = np.empty_like(q), np.empty_like(q[-1:])
    attention_kv(full, q, ks, vs, pos, kv_len, 0.3, 0, 0.0, NO_SINKS, new_scratch(k.shape[1], 64, 2))
    attention_kv(last, q[-1:], ks, vs, pos[-1:], kv_len, 0.3, 0, 0.0, NO_SINKS, new_scratch(k.shape[1], 64, 1))
    np.testing.assert_array_equal(full[-1:], last)
