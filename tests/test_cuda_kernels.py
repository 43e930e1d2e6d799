"""CUDA matmul, RMSNorm, residual junction, Q/K/V heads (norm, RoPE, cache store) and
elementwise kernels against their CPU twins.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Shapes are small: the simulator runs each thread as a Python thread.
"""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants

from kernels import activation as cpu_act
from kernels.cuda import activation, launch
from kernels.cuda.heads import heads
from kernels.cuda.norm import residual, rms_norm
from kernels.cuda.packing import KIND_BYTE, KIND_FLOAT, KIND_NIBBLE, host_form, upload
from kernels.cuda.qmatmul import matmul
from kernels.matmul import matmul as cpu_matmul
from kernels.matmul import pack
from kernels.norm import rms_norm as cpu_rms_norm
from kernels.rope import rope_apply as cpu_rope_apply
from kernels.rope import rope_cache
from tests.cuda_oracle import dev, host
from tests.quant_blocks import random_matrix

RNG = np.random.default_rng(7)
# One type per code layout and scale size: nibbles (4-bit, 2-bit K), bytes (5, 6, 8-bit), floats.
TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0, T.Q2_K, T.Q4_K, T.Q6_K, T.IQ4_NL, T.F16, T.BF16, T.F32]


def _weights(qt, n, k):
    raw = random_matrix(qt, n, k, RNG)  # valid random blocks (gguf cannot quantize K-quants)
    return raw, quants.dequantize(raw, qt).reshape(n, k)


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_host_form_is_the_dequantized_matrix(qt):
    """Every layout decodes to gguf's values (affine rounding aside)."""
    k = 256 if qt in (T.Q2_K, T.Q4_K, T.Q6_K) else 64
    raw, wd = _weights(qt, 3, k)
    kind, bs, codes, scale, offset, w = host_form(raw, qt, 3, k)
    if kind == KIND_FLOAT:
        np.testing.assert_array_equal(w, wd)
        return
    assert codes.dtype == np.uint32
    per, bits = (8, 4) if kind == KIND_NIBBLE else (4, 8)  # weights per 32-bit word, bits per weight
    assert kind in (KIND_NIBBLE, KIND_BYTE) and codes.shape == (3, k // per)
    shifts = np.arange(per, dtype=np.uint32) * bits
    q = ((codes[:, :, None] >> shifts) & ((1 << bits) - 1)).reshape(3, k).astype(np.float32)
    got = np.repeat(scale, bs, axis=1) * q + np.repeat(offset, bs, axis=1)
    np.testing.assert_allclose(got, wd, rtol=1e-6, atol=1e-6 * np.abs(wd).max())


@pytest.mark.parametrize("n_tok", [1, 3, launch.GEMV_MAX_TOKENS + 2], ids=["decode1", "decode3", "prefill"])
@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_matmul_matches_numpy_and_the_cpu_kernel(qt, n_tok):
    k = 256 if qt in (T.Q2_K, T.Q4_K, T.Q6_K) else 64
    n = 5  # not a multiple of the rows per block or the tile
    raw, wd = _weights(qt, n, k)
    x = RNG.standard_normal((n_tok, k)).astype(np.float32)
    y = dev(np.full((n_tok, n), np.nan, np.float32))
    matmul(y, dev(x), upload(raw, qt, n, k))
    got = host(y)
    want = x.astype(np.float64) @ wd.T.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    cpu = np.zeros((n_tok, n), np.float32)
    cpu_matmul(cpu, x, pack(raw, qt, n, k))  # the CPU twin quantizes x to int8: looser
    np.testing.assert_allclose(got, cpu, rtol=0, atol=0.02 * np.abs(want).max())


def test_matmul_writes_a_column_slice_of_a_fused_output():
    raw, wd = _weights(T.Q4_0, 4, 64)
    x = RNG.standard_normal((2, 64)).astype(np.float32)
    y = dev(np.zeros((2, 10), np.float32))
    matmul(y[:, 3:7], dev(x), upload(raw, T.Q4_0, 4, 64))
    got = host(y)
    np.testing.assert_allclose(got[:, 3:7], x @ wd.T, rtol=1e-4, atol=1e-4)
    assert not got[:, :3].any() and not got[:, 7:].any()


@pytest.mark.parametrize("rows,n", [(3, 40), (4, 8)])
def test_rms_norm_matches_cpu(rows, n):
    x = RNG.standard_normal((rows, n)).astype(np.float32) * 3
    w = RNG.standard_normal(n).astype(np.float32)
    want = np.empty_like(x)
    cpu_rms_norm(want, x, w, 1e-6)
    d = dev(x)
    rms_norm(d, d, dev(w), 1e-6)  # in place, as the Q/K norms run
    np.testing.assert_allclose(host(d), want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("gelu", [False, True], ids=["swiglu", "geglu"])
def test_gated_activation_matches_cpu(gelu):
    gu = (RNG.standard_normal((2, 24)) * 4).astype(np.float32)
    want = np.empty((2, 12), np.float32)
    (cpu_act.geglu if gelu else cpu_act.swiglu)(want, gu[:, :12], gu[:, 12:])
    d, out = dev(gu), dev(np.zeros((2, 12), np.float32))
    (activation.geglu if gelu else activation.swiglu)(out, d[:, :12], d[:, 12:])
    np.testing.assert_allclose(host(out), want, rtol=1e-5, atol=1e-6)


def test_glue_kernels():
    a = RNG.standard_normal((3, 5)).astype(np.float32)
    v = RNG.standard_normal(5).astype(np.float32)
    d = dev(a)
    activation.add_bias(d, dev(v))
    np.testing.assert_allclose(host(d), a + v, rtol=1e-6, atol=1e-6)
    out = dev(np.zeros((3, 5), np.float32))
    activation.scale_cap(out, dev(a), 2.0, 1.5)
    np.testing.assert_allclose(host(out), 1.5 * np.tanh(a * 2 / 1.5), rtol=1e-5, atol=1e-6)
    rows = dev(np.zeros((2, 5), np.float32))
    activation.gather_rows(rows, dev(a), dev(np.array([2, 0], np.int64)))
    np.testing.assert_array_equal(host(rows), a[[2, 0]])


@pytest.mark.parametrize("post,nxt", [(False, True), (True, True), (True, False)], ids=["add-norm", "post-add-norm",
                                                                                    "post-add"])
def test_residual_junction_matches_cpu(post, nxt):
    x = RNG.standard_normal((3, 40)).astype(np.float32)
    h = RNG.standard_normal((3, 40)).astype(np.float32) * 5
    w_post, w_next = (RNG.standard_normal(40).astype(np.float32) for _ in range(2))
    want_h = h.copy()
    if post:
        cpu_rms_norm(want_h, h, w_post, 1e-6)
    want_x = x + want_h
    want_out = np.empty_like(x)
    cpu_rms_norm(want_out, want_x, w_next, 1e-6)
    dx, dh = dev(x), dev(h)
    none = dev(np.zeros(0, np.float32))
    residual(dh, dx, dh, dev(w_post) if post else none, dev(w_next) if nxt else none, 1e-6)  # out aliases h
    np.testing.assert_allclose(host(dx), want_x, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(host(dh), want_out if nxt else h, rtol=2e-6, atol=2e-6)


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
