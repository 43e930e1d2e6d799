"""The sampler chain (service/sampling/chain.py, through the Sampler) against tests/oracles/sampling.py.

Comparisons are of the final candidate set a draw samples from: the same token ids, and
probabilities within rtol 2e-4 (float32 logits, fast_exp's 3e-7, float32 sums over at most
a few thousand terms). Where float32 and float64 arithmetic may put a cut-off on either side
of a token (top_p's running sum, min_p's threshold, typical's scores), hypothesis-drawn
cases accept any set between the oracle's sets for the parameter nudged both ways.
The DRY step is tested in test_sampling_dry.py, draws and seeds in test_sampling_sampler.py.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from service.sampling import Sampler, SamplingParams
from tests.oracles import sampling as O

RTOL = 2e-4


def _logits(n=300, seed=42, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


def _final(params, logits, history=(), **kw):
    s = Sampler(params, logits.shape[0], **kw)
    s.accept_many(history)
    tok = s.sample(logits)
    ids, probs = s.candidates()
    return tok, ids, probs, s


def _assert_dist(ids, probs, ref_ids, ref_probs):
    a, b = np.argsort(ids, kind="stable"), np.argsort(ref_ids, kind="stable")
    np.testing.assert_array_equal(np.asarray(ids)[a], np.asarray(ref_ids)[b])
    np.testing.assert_allclose(np.asarray(probs)[a], np.asarray(ref_probs)[b], rtol=RTOL, atol=1e-7)


def _one(name, **kw):
    return SamplingParams(samplers=(name,), seed=7, **kw)


# -- each sampler against its reference ----------------------------------------------------

HIST = [5, 9, 5, 17, 3, 5, 9, 250, 17, 17, 2, 9]


@pytest.mark.parametrize(
    "params, ref",
    [
        (_one("top_k", top_k=25), lambda i, x: O.top_k(i, x, 25)),
        (_one("top_p", top_p=0.7), lambda i, x: O.top_p(i, x, 0.7)),
        (_one("top_p", top_p=0.3, min_keep=20), lambda i, x: O.top_p(i, x, 0.3, 20)),
        (_one("min_p", min_p=0.1), lambda i, x: O.min_p(i, x, 0.1)),
        (_one("min_p", min_p=0.5, min_keep=30), lambda i, x: O.min_p(i, x, 0.5, 30)),
        (_one("typ_p", typical_p=0.6), lambda i, x: O.typical(i, x, 0.6)),
        (_one("typ_p", typical_p=0.2, min_keep=9), lambda i, x: O.typical(i, x, 0.2, 9)),
        (_one("top_n_sigma", top_n_sigma=1.5), lambda i, x: O.top_n_sigma(i, x, 1.5)),
        (_one("temperature", temperature=0.7), lambda i, x: O.temperature(i, x, 0.7)),
        (_one("temperature", temperature=0.0), lambda i, x: O.temperature(i, x, 0.0)),
        (
            _one("temperature", temperature=1.0, dynatemp_range=0.5, dynatemp_exponent=1.3),
            lambda i, x: O.dynatemp(i, x, 1.0, 0.5, 1.3),
        ),
        (
            _one("xtc", xtc_probability=1.0, xtc_threshold=0.02),
            lambda i, x: O.xtc(i, x, 1.0, 0.02, 0, 0.5),
        ),
        (
            _one("penalties", repeat_penalty=1.3, frequency_penalty=0.4, presence_penalty=0.25, repeat_last_n=8),
            lambda i, x: O.penalties(i, x, HIST[-8:], 1.3, 0.4, 0.25),
        ),
    ],
    ids=lambda v: v.samplers[0] if isinstance(v, SamplingParams) else "",
)
def test_sampler_matches_oracle(params, ref):
    x = _logits()
    x[[10, 11, 12]] = x.max()  # ties at the top
    _, ids, probs, _ = _final(params, x, HIST)
    r_ids, r_x = ref(np.arange(x.size), x)
    _assert_dist(ids, probs, r_ids, O.softmax(r_x))


def test_samplers_after_top_k_match_oracle():
    """The same filters on a sorted, compact set (after top_k) as on the dense vocabulary."""
    x = _logits(2000, seed=3)
    for extra in (
        dict(top_p=0.6), dict(min_p=0.2), dict(typical_p=0.5), dict(top_n_sigma=0.8),
        dict(xtc_probability=1.0, xtc_threshold=0.05), dict(repeat_penalty=1.5, frequency_penalty=0.3),
    ):
        p = SamplingParams(**{**dict(seed=1, top_k=50, top_p=1.0, min_p=0.0), **extra})
        _, ids, probs, _ = _final(p, x, HIST)
        r_ids, r_probs = O.chain(x, p, HIST, xtc_chance=0.0)
        _assert_dist(ids, probs, r_ids, r_probs)


def test_dense_paths_on_a_large_vocabulary():
    """top_k off: top_p widens its partial sort, min_p filters, XTC sorts, all over 50,000 logits."""
    x = _logits(50000, seed=5, scale=3.0)
    # top_p = 0.999 ends in a tail of p ~ 1e-8 tokens: float32 sums place the cut within a few of them
    _, ids, _, _ = _final(SamplingParams(top_k=0, top_p=0.999, min_p=0.0), x)
    _between(ids, O.top_p(np.arange(x.size), x, 0.999 - 1e-5)[0], O.top_p(np.arange(x.size), x, 0.999 + 1e-5)[0])
    for extra in (dict(top_p=0.9, min_p=0.0), dict(top_p=0.99, min_p=0.0), dict(top_p=1.0, min_p=0.01),
                  dict(top_p=1.0, min_p=0.0, xtc_probability=1.0, xtc_threshold=0.001, samplers="x"),
                  dict(top_p=1.0, min_p=0.0, top_n_sigma=3.0), dict(top_p=0.5, min_p=0.0, min_keep=3000),
                  dict(top_p=0.5, min_p=0.0, min_keep=40), dict(top_p=1.0, min_p=0.5, min_keep=100)):
        p = SamplingParams(seed=2, top_k=0, **extra)
        _, ids, probs, _ = _final(p, x)
        r_ids, r_probs = O.chain(x, p, xtc_chance=0.0)
        _assert_dist(ids, probs, r_ids, r_probs)


def _between(ids, small, large):
    s, a, b = set(ids.tolist()), set(small.tolist()), set(large.tolist())
    assert a <= s <= b, (len(a), len(s), len(b))


logit_lists = st.lists(st.floats(-15, 15, width=32), min_size=2, max_size=200)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logit_lists, st.floats(0.05, 0.99), st.integers(0, 5))
def test_top_p_min_p_typical_hypothesis(vals, p, min_keep):
    x = np.array(vals, np.float32)
    ids0 = np.arange(x.size)
    checks = [("top_p", O.top_p, -1), ("min_p", O.min_p, +1)]
    q = O.softmax(x)
    score = np.abs(-np.log(q) - (-np.sum(q * np.log(q))))
    gaps = np.abs(score[:, None] - score[None, :])[x[:, None] != x[None, :]]
    if gaps.size == 0 or gaps.min() > 1e-5:  # typical's order is ill-defined for near-equal scores
        checks.append(("typ_p", O.typical, -1))
    for name, ref, tighter in checks:
        field = {"top_p": "top_p", "min_p": "min_p", "typ_p": "typical_p"}[name]
        _, ids, _, _ = _final(SamplingParams(samplers=(name,), min_keep=min_keep, **{field: p}), x)
        a = ref(ids0, x, min(max(p + tighter * 1e-4, 0.0), 1.0), min_keep)[0]
        b = ref(ids0, x, min(max(p - tighter * 1e-4, 0.0), 1.0), min_keep)[0]
        _between(ids, a, b)


@settings(max_examples=40, deadline=None)
@given(logit_lists, st.integers(-1, 60), st.floats(0.1, 3.0))
def test_top_k_then_temperature_hypothesis(vals, k, t):
    x = np.array(vals, np.float32)
    p = SamplingParams(samplers="kt", top_k=k, temperature=t, seed=3)
    _, ids, probs, _ = _final(p, x)
    r_ids, r_probs = O.chain(x, p)
    _assert_dist(ids, probs, r_ids, r_probs)


def test_chain_order_matters():
    x = _logits(500, seed=11)
    a = SamplingParams(samplers=["temperature", "min_p"], temperature=3.0, min_p=0.2, seed=0)
    b = SamplingParams(samplers=["min_p", "temperature"], temperature=3.0, min_p=0.2, seed=0)
    _, ia, pa, _ = _final(a, x)
    _, ib, pb, _ = _final(b, x)
    assert set(ia.tolist()) != set(ib.tolist())
    for p, ids, probs in ((a, ia, pa), (b, ib, pb)):
        _assert_dist(ids, probs, *O.chain(x, p))


def test_default_chain_matches_oracle():
    x = _logits(3000, seed=12, scale=2.5)
    hist = list(np.argsort(-x)[:6]) * 3
    p = SamplingParams(
        seed=5, repeat_penalty=1.2, frequency_penalty=0.1, presence_penalty=0.1, dry_multiplier=0.5,
        top_n_sigma=2.5, typical_p=0.97, xtc_probability=1.0, xtc_threshold=0.05,
        logit_bias=((int(np.argmax(x)), -2.0), (7, 5.0)),
    )
    _, ids, probs, _ = _final(p, x, hist, dry_breakers=[[1]])
    _assert_dist(ids, probs, *O.chain(x, p, hist, [[1]], xtc_chance=0.0))

