"""The sampler chain (service/sampling, kernels/sampling*.py) against tests/oracle_sampling.py.

Comparisons are of the final candidate set a draw samples from: the same token ids, and
probabilities within rtol 2e-4 (float32 logits, fast_exp's 3e-7, float32 sums over at most
a few thousand terms). Where float32 and float64 arithmetic may put a cut-off on either side
of a token (top_p's running sum, min_p's threshold, typical's scores), hypothesis-drawn
cases accept any set between the oracle's sets for the parameter nudged both ways.
"""

import math

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kernels import sampling as K
from service.sampling import (
    DEFAULT_SAMPLER_SEQ,
    DEFAULT_SAMPLERS,
    LLAMA_DEFAULT_SEED,
    Sampler,
    SamplerWorkspace,
    SamplingParams,
    dry_breaker_sequences,
    parse_samplers,
    samplers_to_letters,
)
from tests import oracle_sampling as O

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


# -- parameters ----------------------------------------------------------------------------


def test_defaults_match_llama_server():
    p = SamplingParams()
    assert p.seed == LLAMA_DEFAULT_SEED == 0xFFFFFFFF
    assert (p.n_probs, p.min_keep, p.top_k) == (0, 0, 40)
    assert (p.top_p, p.min_p, p.typical_p) == (0.95, 0.05, 1.0)
    assert (p.xtc_probability, p.xtc_threshold) == (0.0, 0.1)
    assert (p.temperature, p.dynatemp_range, p.dynatemp_exponent) == (0.8, 0.0, 1.0)
    assert (p.repeat_last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty) == (64, 1.0, 0.0, 0.0)
    assert (p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_penalty_last_n) == (0.0, 1.75, 2, 64)
    assert p.dry_sequence_breakers == ("\n", ":", '"', "*")
    assert (p.mirostat, p.mirostat_tau, p.mirostat_eta) == (0, 5.0, 0.1)
    assert p.top_n_sigma == -1.0
    assert p.ignore_eos is False and p.logit_bias == ()
    assert p.samplers == DEFAULT_SAMPLERS
    assert ";".join(DEFAULT_SAMPLERS) == "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature"
    assert samplers_to_letters(DEFAULT_SAMPLERS) == DEFAULT_SAMPLER_SEQ == "edskypmxt"


def test_parse_samplers():
    assert parse_samplers("edskypmxt") == DEFAULT_SAMPLERS
    assert parse_samplers(";".join(DEFAULT_SAMPLERS)) == DEFAULT_SAMPLERS
    assert parse_samplers(["top_k", "temperature"]) == ("top_k", "temperature")
    assert parse_samplers(["top-k", "nucleus", "typical", "temp"]) == ("top_k", "top_p", "typ_p", "temperature")
    assert parse_samplers("kkt") == ("top_k", "top_k", "temperature")
    assert parse_samplers("") == ()
    assert SamplingParams(samplers="kt").samplers == ("top_k", "temperature")
    for bad in (["top_k", "bogus"], "ktz", ["infill"], "a", 3):
        with pytest.raises(ValueError, match="^samplers:"):
            parse_samplers(bad)


@pytest.mark.parametrize(
    "field, value",
    [
        ("top_p", 1.5), ("top_p", -0.1), ("min_p", 2.0), ("typical_p", -1.0), ("top_k", -2),
        ("xtc_probability", 1.1), ("xtc_threshold", -0.5), ("temperature", math.nan),
        ("dynatemp_range", -1.0), ("repeat_last_n", -2), ("repeat_penalty", 0.0),
        ("dry_penalty_last_n", -5), ("dry_allowed_length", -1), ("dry_multiplier", -1.0),
        ("mirostat", 3), ("mirostat_eta", -0.1), ("seed", -2), ("seed", 2**32), ("n_probs", -1),
        ("min_keep", -1), ("top_k", 1.5), ("samplers", ["nope"]), ("logit_bias", ((-1, 1.0),)),
        ("logit_bias", ((1, math.nan),)), ("frequency_penalty", math.inf),
    ],
)
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        SamplingParams(**{field: value})


def test_accepted_edge_values():
    p = SamplingParams(seed=-1, top_k=-1, top_p=0.0, dry_base=0.5, temperature=-1.0, logit_bias=((3, -math.inf),))
    assert p.seed == LLAMA_DEFAULT_SEED and p.seed_is_random
    assert p.dry_base == 1.75  # llama-server resets dry_base < 1 to its default
    assert SamplingParams(top_k=0).top_k == 0


def test_decode_from_request_json():
    body = b'{"temperature": 0.5, "top_k": 10, "samplers": "kt", "typical_p": 1, "prompt": "hi", "seed": -1}'
    p = msgspec.json.decode(body, type=SamplingParams)
    assert (p.temperature, p.top_k, p.samplers, p.seed) == (0.5, 10, ("top_k", "temperature"), LLAMA_DEFAULT_SEED)
    with pytest.raises(ValueError, match="top_p"):
        msgspec.json.decode(b'{"top_p": 3}', type=SamplingParams)


def test_minus_one_windows_need_n_ctx():
    with pytest.raises(ValueError, match="^repeat_last_n:"):
        Sampler(SamplingParams(repeat_last_n=-1), 10)
    s = Sampler(SamplingParams(repeat_last_n=-1, dry_penalty_last_n=-1, repeat_penalty=1.1), 10, n_ctx=100)
    s.accept_many(range(10))
    assert s.history.size == 10


# -- the top-k selection kernel --------------------------------------------------------------


def _select(vals, k, cap, ids=None):
    n = vals.shape[0]
    dense = ids is None
    ids = np.zeros(n, np.int32) if dense else ids
    out_i, out_v = np.zeros(n, np.int32), np.zeros(n, np.float32)
    bi, bv, tmp = np.zeros(n, np.int32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    kk = K.top_k_select(out_i, out_v, bi, bv, tmp, ids, vals, dense, n, k, cap, True)
    return out_i[:kk], out_v[:kk]


@pytest.mark.parametrize("order", ["random", "ascending", "descending", "equal", "ties", "neginf"])
def test_top_k_select_orders_and_ties(order):
    rng = np.random.default_rng(1)
    n = 5000
    v = rng.standard_normal(n).astype(np.float32)
    if order == "ascending":
        v.sort()
    elif order == "descending":
        v = -np.sort(v)
    elif order == "equal":
        v[:] = 1.5
    elif order == "ties":
        v = rng.integers(0, 7, n).astype(np.float32)
    elif order == "neginf":
        v[rng.random(n) < 0.9] = -np.inf
    ref = np.argsort(-v.astype(np.float64), kind="stable")
    for k, cap in ((1, 128), (40, 128), (40, 4096), (300, 900), (n, n)):
        ids, vals = _select(v, k, cap)
        np.testing.assert_array_equal(ids, ref[:k])
        np.testing.assert_array_equal(vals, v[ref[:k]])
    perm = rng.permutation(n).astype(np.int32)  # a compact set: ids follow positions
    ids, vals = _select(v, 40, 128, perm)
    np.testing.assert_array_equal(ids, perm[ref[:40]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-30, 30, width=32), min_size=1, max_size=400), st.integers(1, 450), st.integers(1, 500))
def test_top_k_select_hypothesis(vals, k, cap):
    v = np.array(vals, np.float32)
    k = min(k, v.size)
    cap = min(v.size, max(cap, 2 * k))
    ids, out = _select(v, k, cap)
    ref = np.argsort(-v.astype(np.float64), kind="stable")[:k]
    np.testing.assert_array_equal(ids, ref)


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


def test_dry_matches_oracle():
    rng = np.random.default_rng(9)
    x = _logits(60, seed=4)
    breakers = [[7], [8, 9], [1, 2, 3]]
    for trial in range(40):
        hist = rng.integers(0, 12, rng.integers(0, 80)).tolist()
        if trial % 3 == 0:  # plant a repeat
            hist = hist + hist[-10:]
        kw = dict(dry_multiplier=0.8, dry_base=1.75, dry_allowed_length=int(rng.integers(0, 4)), dry_penalty_last_n=int(rng.integers(1, 70)))
        p = SamplingParams(samplers=("dry",), seed=1, **kw)
        _, ids, probs, _ = _final(p, x, hist, dry_breakers=breakers)
        r_ids, r_probs = O.chain(x, p, hist, breakers)
        _assert_dist(ids, probs, r_ids, r_probs)
        if trial == 0:  # after top_k too (the compact path)
            p = SamplingParams(samplers=("top_k", "dry"), top_k=20, seed=1, **kw)
            _, ids, probs, _ = _final(p, x, hist, dry_breakers=breakers)
            r_ids, r_probs = O.chain(x, p, hist, breakers)
            _assert_dist(ids, probs, r_ids, r_probs)


def test_dry_penalizes_the_token_that_continues_a_repeat():
    x = np.zeros(20, np.float32)
    hist = [1, 2, 3, 4, 9, 1, 2, 3]  # "1 2 3" repeats: 4 would continue it
    p = SamplingParams(samplers=("dry",), dry_multiplier=1.0, dry_allowed_length=2, seed=0)
    _, ids, probs, _ = _final(p, x, hist)
    pr = dict(zip(ids.tolist(), probs.tolist()))
    assert pr[4] < pr[5] and math.isclose(pr[4] / pr[5], math.exp(-1.0 * 1.75 ** (3 - 2)), rel_tol=1e-4)
    _, ids, probs, _ = _final(p, x, hist, dry_breakers=[[2]])  # a breaker inside the repeat stops it
    assert np.allclose(probs, probs[0])


def test_dry_breaker_sequences():
    pieces = ["a", "b\n", ":x", "ab", "x*", "*y", "c", "\n"]
    enc = {"\n": [7], "y": [9], "*y": [5]}
    seqs = dry_breaker_sequences(["\n", "*y"], pieces, lambda s: enc.get(s, [6]))
    assert [1] in seqs and [7] in seqs  # tokens containing "\n"
    assert [5] in seqs  # "*y" itself
    assert [4, 9] in seqs  # "x*" ends with the start of "*y"; "y" follows


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


# -- draws, seeds, greedy --------------------------------------------------------------------


def test_sample_dist_kernel_matches_reference():
    x = _logits(50, seed=13)
    probs = np.zeros(50, np.float32)
    for u in np.linspace(0, 0.999999, 97):
        assert K.sample_dist(probs, x, 50, u) == O.dist(x, u)
    np.testing.assert_allclose(probs, O.softmax(x), rtol=1e-5)


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
