"""Sampling from the top k alone (what a GPU head sends) against sampling from the whole row.

Sampler.top_k_first says when a chain may start from the row's k most likely tokens;
sample_top must then draw what sample() draws from the full row, with the same seed, for
every parameter mix that allows it. The engine's choice between the two paths is checked on
logits left on the (simulated) device.
"""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import sampling as K
from service.engine.engine import Engine
from service.sampling import SamplingParams, Sampler

N_VOCAB = 300


def top(row: np.ndarray, k: int):
    """The row's k largest logits with their ids, descending, ties by lower id (the device's order)."""
    n = row.shape[0]
    ids, vals = np.zeros(k, np.int32), np.zeros(k, np.float32)
    kk = K.top_k_select(ids, vals, np.zeros(n, np.int32), np.zeros(n, np.float32), np.zeros(n, np.float32),
                        np.zeros(0, np.int32), row, True, n, k, n, True)
    return ids[:kk], vals[:kk]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 60), temp=st.sampled_from([0.0, 0.3, 0.8, 1.5]),
       top_p=st.sampled_from([1.0, 0.9, 0.5]), min_p=st.sampled_from([0.0, 0.05, 0.3]),
       typical=st.sampled_from([1.0, 0.7]), xtc=st.sampled_from([0.0, 0.5]), ties=st.booleans())
def test_top_k_first_draws_what_the_whole_row_draws(seed, k, temp, top_p, min_p, typical, xtc, ties):
    rng = np.random.default_rng(seed)
    row = rng.normal(0, 3, N_VOCAB).astype(np.float32)
    if ties:  # many equal logits: the order among them must match too
        row = np.round(row).astype(np.float32)
    p = SamplingParams(seed=seed % 2**31, top_k=k, temperature=temp, top_p=top_p, min_p=min_p, typical_p=typical,
                       xtc_probability=xtc, xtc_threshold=0.1)
    full, part = Sampler(p, N_VOCAB), Sampler(p, N_VOCAB)
    assert part.top_k_first == k
    for _ in range(3):  # a few draws: the RNG streams must stay in step
        want = full.sample(row)
        got = part.sample_top(*top(row, part.top_k_first))
        assert got == want
        full.accept(want)
        part.accept(got)


@pytest.mark.parametrize("kw", [
    dict(top_k=0),  # no top_k stage
    dict(logit_bias=((5, 2.0),)),
    dict(ignore_eos=True),  # end-of-generation banned through the bias
    dict(n_probs=3),  # probabilities over the whole row are reported
    dict(repeat_penalty=1.1),  # penalties run before top_k
    dict(dry_multiplier=0.8),
    dict(top_n_sigma=1.0),
    dict(mirostat=2),
    dict(samplers=("temperature", "top_k")),  # temperature 0.8 before top_k changes the logits
])
def test_chains_that_need_the_whole_row(kw):
    s = Sampler(SamplingParams(seed=1, **kw), N_VOCAB, eog_ids=(0,), n_ctx=64)
    assert s.top_k_first == 0


def test_the_engine_samples_device_logits_from_their_top_k(tmp_path):
    """On a GPU head the engine takes only the top k when the chain allows, else the row."""
    from service.model.forward import Batch
    from service.model.logits import HostLogits, Logits
    from service.model.model import Model
    from tests.synthetic import Spec, write_model

    path = write_model(tmp_path / "m.gguf", Spec("llama", n_layer=1, n_embd=32, n_ff=64, n_head=2, n_head_kv=1,
                                                  n_vocab=N_VOCAB, eps=1e-5))
    m = Model(path, n_ctx=8, n_seq=1, max_batch=4, n_gpu_layers="all")
    logits = m.forward(Batch(np.array([3, 4], np.int32), np.zeros(2, np.int32), np.arange(2, dtype=np.int32),
                             np.ones(2, bool))).logits
    assert isinstance(logits, Logits) and logits.max_k >= 7 and len(logits) == 2
    host = logits.row(1)
    ids, vals = logits.top_k(1, 7)
    want_ids, want_vals = top(host, 7)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(vals, want_vals)
    for kw, device in ((dict(top_k=7), True), (dict(top_k=7, n_probs=2), False)):
        tok, row = Engine._sample(Sampler(SamplingParams(seed=3, **kw), N_VOCAB), logits, 1)
        assert (row is None) == device
        assert tok == Sampler(SamplingParams(seed=3, **kw), N_VOCAB).sample(host)
    # host logits serve no top k: the engine samples their row, with the same result
    on_host = HostLogits(np.stack([host, host]))
    assert isinstance(on_host, Logits) and on_host.max_k == 0
    tok, row = Engine._sample(Sampler(SamplingParams(seed=3, top_k=7), N_VOCAB), on_host, 1)
    assert np.array_equal(row, host)
    assert tok == Sampler(SamplingParams(seed=3, top_k=7), N_VOCAB).sample(host)
