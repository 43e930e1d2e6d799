"""The per-sequence Sampler (service/sampling/sampler.py): history windows, draws, seeds, greedy,
logit_bias and ignore_eos, Mirostat and n_probs, against tests/oracles/sampling.py.

Candidate sets are compared as in test_sampling_chain.py (same ids, probabilities within rtol 2e-4).
"""

import math

import numpy as np
import pytest

from service.sampling import LLAMA_DEFAULT_SEED, Sampler, SamplerWorkspace, SamplingParams
from tests.oracles import sampling as O
from tests.test_sampling_chain import _assert_dist, _logits


def test_minus_one_windows_need_n_ctx():
    with pytest.raises(ValueError, match="^repeat_last_n:"):
        Sampler(SamplingParams(repeat_last_n=-1), 10)
    s = Sampler(SamplingParams(repeat_last_n=-1, dry_penalty_last_n=-1, repeat_penalty=1.1), 10, n_ctx=100)
    s.accept_many(range(10))
    assert s.history.size == 10


# -- draws, seeds, greedy --------------------------------------------------------------------


def _generate(s, x, n=30):
    out = []
    for i in range(n):
        t = s.sample(np.roll(x, i))
        s.accept(t)
        out.append(t)
    return out


def test_same_seed_same_tokens_and_interleaving():
    x = _logits(1000, seed=14, scale=1.0)
    p1 = SamplingParams(seed=123, repeat_penalty=1.1, xtc_probability=0.5, xtc_threshold=0.05)
    p2 = SamplingParams(seed=456, temperature=1.3, dry_multiplier=0.5)
    alone1 = _generate(Sampler(p1, 1000), x)
    assert alone1 == _generate(Sampler(p1, 1000), x)
    alone2 = _generate(Sampler(p2, 1000), x)
    assert alone1 != alone2
    ws = SamplerWorkspace(1000)  # shared scratch, calls interleaved
    s1, s2 = Sampler(p1, 1000, workspace=ws), Sampler(p2, 1000, workspace=ws)
    got1, got2 = [], []
    for i in range(30):
        for s, got in ((s1, got1), (s2, got2)):
            t = s.sample(np.roll(x, i))
            s.accept(t)
            got.append(t)
    assert got1 == alone1 and got2 == alone2
    s1.reset()
    assert _generate(s1, x) == alone1


def test_random_seed_is_reported_and_reproducible():
    x = _logits(400, seed=15, scale=0.5)
    s = Sampler(SamplingParams(seed=-1), 400)
    assert 0 <= s.seed < LLAMA_DEFAULT_SEED
    toks = _generate(s, x)
    assert _generate(Sampler(SamplingParams(seed=s.seed), 400), x) == toks


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_greedy_when_temperature_not_positive(t):
    x = _logits(5000, seed=16, scale=0.3)
    for seed in range(5):
        s = Sampler(SamplingParams(temperature=t, seed=seed, n_probs=3), 5000)
        tok = s.sample(x)
        assert tok == int(np.argmax(x))
        lp = s.last_probs
        assert lp.prob == 1.0 and lp.top_ids[0] == tok and lp.top_probs[0] == 1.0
        assert lp.top_probs[1] == 0.0
        pre = s.pre_sampling_probs(x, tok, 5)  # llama-server's default n_probs: raw softmax
        ref = O.softmax(x)
        np.testing.assert_array_equal(pre.top_ids, np.argsort(-ref, kind="stable")[:5])
        np.testing.assert_allclose(pre.top_probs, np.sort(ref)[::-1][:5], rtol=1e-4)
        assert math.isclose(pre.prob, ref[tok], rel_tol=1e-4)
    # mirostat's chain uses temperature too
    assert Sampler(SamplingParams(temperature=t, mirostat=2, seed=0), 5000).sample(x) == int(np.argmax(x))


def test_logit_bias_and_ignore_eos():
    x = _logits(100, seed=17)
    top = int(np.argmax(x))
    banned = SamplingParams(temperature=5.0, top_k=0, top_p=1.0, min_p=0.0, logit_bias=((top, -math.inf),), seed=1)
    s = Sampler(banned, 100)
    assert top not in {s.sample(x) for _ in range(200)}
    forced = SamplingParams(logit_bias=((3, 100.0), (500, 1.0)), seed=1)  # 500: outside the vocabulary, dropped
    assert Sampler(forced, 100).sample(x) == 3
    eos = SamplingParams(ignore_eos=True, temperature=0.0)
    assert Sampler(eos, 100, eog_ids=[top]).sample(x) != top
    assert Sampler(SamplingParams(temperature=0.0), 100, eog_ids=[top]).sample(x) == top


def test_draws_follow_the_distribution():
    x = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    s = Sampler(SamplingParams(samplers=(), seed=99), 4)
    counts = np.bincount([s.sample(x) for _ in range(4000)], minlength=4) / 4000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.03)


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_matches_oracle(version):
    x = _logits(3000, seed=18, scale=2.0)
    p = SamplingParams(mirostat=version, mirostat_tau=4.0, mirostat_eta=0.2, temperature=0.9, seed=4)
    s = Sampler(p, 3000)
    for step in range(6):
        mu = s.mu
        y = np.roll(x, 37 * step)
        tok = s.sample(y)
        ids, probs = s.candidates()
        ids0, yt = O.temperature(np.arange(3000), y, 0.9)
        r_ids, r_x = O.mirostat1(ids0, yt, mu, 3000) if version == 1 else O.mirostat2(ids0, yt, mu)
        _assert_dist(ids, probs, r_ids, O.softmax(r_x))
        assert tok in set(r_ids.tolist())
        p_tok = float(probs[ids.tolist().index(tok)])
        assert math.isclose(s.mu, O.mirostat_mu(mu, p_tok, 4.0, 0.2), rel_tol=1e-9)


def test_n_probs_after_sampling():
    x = _logits(800, seed=19)
    s = Sampler(SamplingParams(n_probs=5, seed=3), 800)
    tok = s.sample(x)
    ids, probs = s.candidates()
    lp = s.last_probs
    np.testing.assert_array_equal(lp.top_ids, ids[:5])
    np.testing.assert_allclose(lp.top_probs, probs[:5])
    assert lp.token == tok and lp.prob == pytest.approx(float(probs[ids.tolist().index(tok)]))


def test_history_keeps_the_last_window():
    s = Sampler(SamplingParams(repeat_last_n=16, repeat_penalty=1.1, dry_multiplier=0.5, dry_penalty_last_n=8), 50)
    s.accept_many(range(40))
    for t in range(40, 50):
        s.accept(t)
    np.testing.assert_array_equal(s.history, np.arange(34, 50))
    with pytest.raises(ValueError):
        s.accept(50)
