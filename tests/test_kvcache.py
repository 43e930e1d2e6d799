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
