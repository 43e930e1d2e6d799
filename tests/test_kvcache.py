"""KVCache.shift (context shift): dropping a run of positions and re-rotating the keys after it.

The first layer's keys depend on nothing but the token and its position, so after a shift they
must equal those of the kept tokens evaluated afresh at their new positions. Deeper layers saw
the dropped tokens (that is what a context shift gives up): their values only move, and their
keys turn by the same angles."""

from __future__ import annotations

import numpy as np
import pytest

from service.model.model import Model
from tests.synthetic import Spec, write_model


@pytest.mark.parametrize("arch,window", [("llama", 0), ("qwen2", 0), ("gemma3", 8)])
def test_shift_matches_evaluating_the_kept_tokens(tmp_path, arch, window):
    m = Model(write_model(tmp_path / f"{arch}.gguf", Spec(arch=arch, sliding_window=window, n_ctx=64)), n_ctx=64,
              n_seq=2, max_batch=64)
    rng = np.random.default_rng(1)
    toks = rng.integers(0, m.cfg.n_vocab, 40).tolist()
    n_keep, n_discard = 5, 12
    m.eval(0, toks)
    before_k = [k[0].copy() for k in m.cache.k]
    before_v = [v[0].copy() for v in m.cache.v]
    m.cache.shift(0, n_keep, n_discard)
    kept = toks[:n_keep] + toks[n_keep + n_discard :]
    n = len(kept)
    assert int(m.cache.length[0]) == n
    m.eval(1, kept)
    np.testing.assert_allclose(m.cache.k[0][0, :, :n], m.cache.k[0][1, :, :n], atol=2e-5, rtol=1e-4)
    for li, (k, v) in enumerate(zip(m.cache.k, m.cache.v)):
        np.testing.assert_array_equal(k[0, :, :n_keep], before_k[li][:, :n_keep])  # the kept start stays
        np.testing.assert_array_equal(v[0, :, :n], np.concatenate([before_v[li][:, :n_keep],
                                                                    before_v[li][:, n_keep + n_discard : 40]], 1))
        # a rotation keeps each rotated pair's length
        np.testing.assert_allclose(np.linalg.norm(k[0, :, n_keep:n], axis=-1),
                                   np.linalg.norm(before_k[li][:, n_keep + n_discard : 40], axis=-1), rtol=1e-5)
    m.eval(0, [3])  # the shifted sequence goes on from its new length
    assert int(m.cache.length[0]) == n + 1


def test_shift_refuses_what_is_not_there(tmp_path):
    m = Model(write_model(tmp_path / "m.gguf", Spec()), n_ctx=32, n_seq=1, max_batch=32)
    m.eval(0, list(range(10)))
    with pytest.raises(ValueError):
        m.cache.shift(0, 4, 0)
    with pytest.raises(ValueError):
        m.cache.shift(0, 4, 7)


# ---------------------------------------------------------------------------- cache types (-ctk / -ctv)

TYPED = Spec(n_embd=128, n_head=4, n_head_kv=2, head_dim=32, n_ctx=64)  # head_dim 32: one block per row


def _typed(tmp_path, types, spec=TYPED, n_seq=2):
    return Model(write_model(tmp_path / "t.gguf", spec), n_ctx=64, n_seq=n_seq, max_batch=64, cache_types=types)


def test_cache_stores_its_types_and_counts_their_bytes(tmp_path):
    from kernels import kv_types as kt

    m = _typed(tmp_path, ("q8_0", "q4_1"))
    c = m.cache
    assert (c.k[0].dtype, c.k[0].shape) == (np.uint8, (2, 2, 64, 34))
    assert (c.v[0].dtype, c.v[0].shape) == (np.uint8, (2, 2, 64, 20))
    assert c.bytes_per_token == 2 * 2 * (34 + 20) == c.nbytes // (2 * 64)  # n_layer * n_kv * (K row + V row)
    f = _typed(tmp_path, ("f32", "f16")).cache
    assert (f.k[0].dtype, f.v[0].dtype, f.bytes_per_token) == (np.float32, np.uint16, 2 * 2 * (128 + 64))
    toks = list(range(3, 20))
    m.eval(0, toks)
    k, v = c.read(0, len(toks))
    from kernels.kv_quant import quantize_rows

    # what was stored is the reference quantization of the float32 keys that f32 stores
    f32 = _typed(tmp_path, ("f32", "f32"), n_seq=1)
    f32.eval(0, toks)
    k32, v32 = f32.cache.read(0, len(toks))
    assert (c.rot_k, c.rot_v) == (0, 0)  # head_dim 32: no rotation (kernels.hadamard needs % 64)
    np.testing.assert_array_equal(quantize_rows(k32[0], kt.Q8_0), k[0])  # layer 0 saw the same inputs
    np.testing.assert_array_equal(quantize_rows(v32[0], kt.Q4_1), v[0])
    # head_dim 64: keys (and queries) and values turn by Walsh-Hadamard blocks before they are stored
    wide = Spec(n_embd=128, n_head=2, n_head_kv=1, head_dim=64, n_ctx=64)
    for name, types in (("w32", ("f32", "f32")), ("wq", ("q8_0", "q4_1"))):
        Model(write_model(tmp_path / f"{name}.gguf", wide), n_ctx=64, n_seq=1, max_batch=64, cache_types=types)
    m32, mq = (Model(tmp_path / f"{n}.gguf", n_ctx=64, n_seq=1, max_batch=64, cache_types=t)
               for n, t in (("w32", ("f32", "f32")), ("wq", ("q8_0", "q4_1"))))
    assert (mq.cache.rot_k, mq.cache.rot_v) == (64, 64)
    for mm in (m32, mq):
        mm.eval(0, toks)
    k32, v32 = m32.cache.read(0, len(toks))
    kq, vq = mq.cache.read(0, len(toks))
    h = _hadamard(64)
    np.testing.assert_array_equal(quantize_rows(k32[0] @ h, kt.Q8_0), kq[0])
    np.testing.assert_array_equal(quantize_rows(v32[0] @ h, kt.Q4_1), vq[0])


def _hadamard(n):
    """ggml_gen_hadamard's matrix, built its way (Sylvester doubling from 1 / sqrt(n))."""
    h = np.full((1, 1), 1 / np.sqrt(np.float32(n)), np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


@pytest.mark.parametrize("types", [("q8_0", "q8_0"), ("f16", "iq4_nl"), ("bf16", "q5_0")])
def test_typed_shift_matches_evaluating_the_kept_tokens(tmp_path, types):
    """As the f32 test above, within the type's rounding: keys turn in float32 and are stored
    again in their type; values move row by row, bit for bit."""
    from kernels import kv_types as kt
    from kernels.kv_quant import dequantize_rows

    m = _typed(tmp_path, types)
    tk = kt.type_id(types[0])
    toks = np.random.default_rng(3).integers(0, m.cfg.n_vocab, 40).tolist()
    n_keep, n_discard = 5, 12
    m.eval(0, toks)
    before_k, before_v = m.cache.read(0, 40)
    m.cache.shift(0, n_keep, n_discard)
    kept = toks[:n_keep] + toks[n_keep + n_discard :]
    n = len(kept)
    m.eval(1, kept)
    k0, v0 = m.cache.read(0, n)
    k1, _ = m.cache.read(1, n)
    step = {"q8_0": 1 / 127, "f16": 1e-3, "bf16": 8e-3}[types[0]]
    a, b = dequantize_rows(k0[0], tk), dequantize_rows(k1[0], tk)
    np.testing.assert_allclose(a, b, atol=2 * step * np.abs(b).max())
    np.testing.assert_array_equal(k0[:, :, :n_keep], before_k[:, :, :n_keep])
    moved = np.concatenate([before_v[:, :, :n_keep], before_v[:, :, n_keep + n_discard :]], 2)
    np.testing.assert_array_equal(v0, moved)
    m.eval(0, [3])
    assert int(m.cache.length[0]) == n + 1


def test_typed_rows_round_trip_and_convert(tmp_path):
    from kernels import kv_types as kt
    from kernels.kv_quant import dequantize_rows, quantize_rows
    from service.model.kvcache import convert

    m = _typed(tmp_path, ("q4_0", "bf16"))
    m.eval(0, list(range(5, 30)))
    k, v = m.cache.read(0, 25)
    m.cache.write(1, k, v)
    assert int(m.cache.length[1]) == 25
    np.testing.assert_array_equal(m.cache.read(1, 25)[0], k)
    with pytest.raises(ValueError, match="are not q4_0 rows"):
        m.cache.write(1, convert(k, kt.Q4_0, kt.Q8_0, 32, False), v)
    as_f32 = convert(k, kt.Q4_0, kt.F32, 32, False)
    np.testing.assert_array_equal(as_f32, dequantize_rows(k, kt.Q4_0))
    np.testing.assert_array_equal(convert(as_f32, kt.F32, kt.Q4_0, 32, False), k)  # a q4_0 grid point stays put
    # with head_dim 64, block types are rotated (kernels.hadamard): converting undoes and redoes it
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    h = _hadamard(64)
    rot = quantize_rows(x @ h, kt.Q8_0)
    np.testing.assert_allclose(convert(rot, kt.Q8_0, kt.F16, 64, True).view(np.uint16),
                               quantize_rows(dequantize_rows(rot, kt.Q8_0) @ h, kt.F16), atol=1)
    np.testing.assert_array_equal(convert(rot, kt.Q8_0, kt.Q4_0, 64, True),
                                  quantize_rows(dequantize_rows(rot, kt.Q8_0), kt.Q4_0))  # both rotated: as is


def test_block_types_refuse_a_head_dim_they_do_not_divide(tmp_path):
    from service.model.config import ModelError

    spec = Spec(n_embd=64, n_head=4, n_head_kv=2)  # head_dim 16
    with pytest.raises(ModelError, match="^V cache type q5_1 with block size 32 does not divide n_embd_head_v=16$"):
        _typed(tmp_path, ("f16", "q5_1"), spec)
    assert _typed(tmp_path, ("f16", "bf16"), spec).cache.k[0].shape == (2, 2, 64, 16)
