"""kernels/cuda/heads.py: the fused Q/K/V split, per-head norms, RoPE and KV-cache store against the CPU kernels.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Shapes are small: the simulator runs each thread as a Python thread.
"""

import numpy as np
import pytest

from kernels.cuda.heads import heads
from kernels.norm import rms_norm as cpu_rms_norm
from kernels.rope import rope_apply as cpu_rope_apply
from kernels.rope import rope_cache
from tests.oracles.cuda import dev, host

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("norms,neox", [(False, False), (True, True)], ids=["llama", "gemma3"])
def test_heads_split_norm_rope_and_store_match_cpu(norms, neox):
    """The fused Q/K/V kernel = the CPU layer's split, per-head norms, RoPE and cache writes."""
    n_tok, n_head, n_kv, hd, n_dims, n_seq, n_ctx = 3, 2, 1, 8, 6, 2, 6
    qkv = RNG.standard_normal((n_tok, (n_head + 2 * n_kv) * hd)).astype(np.float32)
    seq, pos = np.array([1, 0, 1], np.int32), np.array([4, 0, 5], np.int32)
    cos, sin = np.empty((n_tok, n_dims // 2), np.float32), np.empty((n_tok, n_dims // 2), np.float32)
    rope_cache(cos, sin, pos, n_dims, 10000.0, 1.0)
    qn, kn = (RNG.standard_normal(hd).astype(np.float32) for _ in range(2))
    nq, nkv = n_head * hd, n_kv * hd
    q = qkv[:, :nq].reshape(n_tok, n_head, hd).copy()
    k = qkv[:, nq:nq + nkv].reshape(n_tok, n_kv, hd).copy()
    if norms:
        cpu_rms_norm(q.reshape(-1, hd), q.reshape(-1, hd), qn, 1e-6)
        cpu_rms_norm(k.reshape(-1, hd), k.reshape(-1, hd), kn, 1e-6)
    cpu_rope_apply(q, cos, sin, n_dims, neox)
    cpu_rope_apply(k, cos, sin, n_dims, neox)
    kc = np.full((n_seq, n_kv, n_ctx, hd), 7.0, np.float32)  # untouched slots keep 7
    vc = kc.copy()
    dq, dk, dv = dev(np.full((n_tok, n_head, hd), np.nan, np.float32)), dev(kc), dev(vc)
    none = dev(np.zeros(0, np.float32))
    heads(dq, dk, dv, dev(qkv), dev(seq), dev(pos), dev(cos), dev(sin), dev(qn) if norms else none,
          dev(kn) if norms else none, 1e-6, n_dims, neox)
    np.testing.assert_allclose(host(dq), q, rtol=2e-6, atol=2e-6)
    for t in range(n_tok):
        kc[seq[t], :, pos[t]] = k[t]
        vc[seq[t], :, pos[t]] = qkv[t, nq + nkv:].reshape(n_kv, hd)
    np.testing.assert_allclose(host(dk), kc, rtol=2e-6, atol=2e-6)
    np.testing.assert_array_equal(host(dv), vc)


@pytest.mark.parametrize("tk,tv,hd", [("q8_0", "f16", 32), ("bf16", "q5_1", 32), ("iq4_nl", "q4_0", 64)])
def test_heads_store_every_cache_type(tk, tv, hd):
    """The cache store in the cache types: each written row is the CPU's row of the same key or
    value (kernels.kv_quant), bit for bit; untouched rows keep their bytes. With head_dim 64 the
    block types are rotated first (kernels.hadamard: queries and keys, values), as on the CPU."""
    from kernels import kv_types as kt
    from kernels.hadamard import fwht_rows, rot_sizes
    from kernels.kv_quant import quantize_rows

    tk, tv = kt.type_id(tk), kt.type_id(tv)
    n_tok, n_head, n_kv, n_seq, n_ctx = 2, 2, 2, 2, 4
    n_dims = hd
    qkv = RNG.standard_normal((n_tok, (n_head + 2 * n_kv) * hd)).astype(np.float32)
    seq, pos = np.array([1, 0], np.int32), np.array([3, 1], np.int32)
    cos, sin = np.empty((n_tok, n_dims // 2), np.float32), np.empty((n_tok, n_dims // 2), np.float32)
    rope_cache(cos, sin, pos, n_dims, 10000.0, 1.0)
    nq, nkv = n_head * hd, n_kv * hd
    q = qkv[:, :nq].reshape(n_tok, n_head, hd).copy()
    k = qkv[:, nq:nq + nkv].reshape(n_tok, n_kv, hd).copy()
    cpu_rope_apply(q, cos, sin, n_dims, False)
    cpu_rope_apply(k, cos, sin, n_dims, False)
    v = qkv[:, nq + nkv:].reshape(n_tok, n_kv, hd).copy()
    rot_k, rot_v = rot_sizes(tk, tv, hd)
    assert (rot_k, rot_v) == ((64, 64) if hd == 64 else (0, 0))
    for x, n in ((q, rot_k), (k, rot_k), (v, rot_v)):
        if n:
            fwht_rows(x.reshape(-1, hd), n)
    caches, halves = [], []
    for t in (tk, tv):
        dtype = np.float16 if t == kt.F16 else kt.storage_dtype(t)
        d = dev(np.full((n_seq, n_kv, n_ctx, kt.row_width(t, hd)), 9, dtype))
        caches.append(d)
        halves.append(d.view(np.float16) if kt.is_quantized(t) else None)
    none = dev(np.zeros(0, np.float32))
    dq = dev(np.zeros((n_tok, n_head, hd), np.float32))
    heads(dq, caches[0], caches[1], dev(qkv), dev(seq), dev(pos), dev(cos), dev(sin), none, none, 1e-6, n_dims, False,
          (tk, tv), tuple(halves))
    np.testing.assert_allclose(host(dq), q, rtol=2e-6, atol=2e-6)
    for got, t, x in ((host(caches[0]), tk, k), (host(caches[1]), tv, v)):
        got = got.view(np.uint16) if got.dtype == np.float16 else got
        want = np.full(got.shape, 9, got.dtype) if t != kt.F16 else np.full(got.shape, np.float16(9).view(np.uint16))
        for i in range(n_tok):
            want[seq[i], :, pos[i]] = quantize_rows(x[i], t)
        np.testing.assert_array_equal(got, want)
