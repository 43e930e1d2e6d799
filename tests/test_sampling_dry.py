"""DRY: the kernels (kernels/sampling_dry.py), the breaker tables (service/sampling/dry.py) and
the chain's DRY step, against the NumPy DRY penalty of tests/oracles/sampling.py.

The kernels find repeats with a Z-algorithm; the oracle compares every earlier end of the
window's suffix token by token, and takes the breaker limit from a plain backwards scan.
Penalties are float32(multiplier * base^e) in both, so they agree to float32 rounding.
"""

import math

import numpy as np
import pytest

from kernels import sampling_dry as D
from service.sampling import SamplingParams, dry_breaker_sequences
from service.sampling.dry import DryTables
from tests.oracles import sampling as O
from tests.test_sampling_chain import _assert_dist, _final, _logits

BREAKERS = [[7], [8, 9], [1, 2, 3]]
N_VOCAB = 12


def _windows(rng, n):
    """n random windows over a 12-token alphabet, every third with a planted repeat."""
    for trial in range(n):
        w = rng.integers(0, N_VOCAB, rng.integers(0, 60)).tolist()
        yield w + w[-10:] if trial % 3 == 0 else w


def _kernel_dry(logits, window, ids, breakers, multiplier, base, allowed):
    """dry_max_repeats then dry_apply on (ids, logits); returns (limit, new logits, marks after)."""
    t = DryTables(breakers, N_VOCAB, base, True)
    marks = np.zeros(N_VOCAB, np.int32)
    win = np.array(window, np.int32)
    vals = np.array(logits, np.float32)
    limit = D.dry_max_repeats(marks, np.zeros(max(len(win), 1), np.int32), win, t.start, t.length, t.offset,
                              t.tails, allowed)
    if limit >= 0:
        dense = ids is None
        idx = np.zeros(0, np.int32) if dense else np.asarray(ids, np.int32)
        D.dry_apply(vals, marks, idx, win, t.start, t.length, dense, len(vals), allowed, np.float32(multiplier),
                    np.float32(base), t.max_exp)
    return limit, vals, marks


@pytest.mark.parametrize("compact", [False, True], ids=["dense", "compact"])
def test_kernels_match_the_oracle(compact):
    rng = np.random.default_rng(21 + compact)
    x = (rng.standard_normal(N_VOCAB) * 2).astype(np.float32)
    for window in _windows(rng, 120):
        allowed, base = int(rng.integers(0, 4)), float(rng.choice([1.0, 1.75, 3.0]))
        ids = rng.permutation(N_VOCAB)[:7] if compact else np.arange(N_VOCAB)  # a candidate subset, any order
        limit, got, marks = _kernel_dry(x[ids], window, ids if compact else None, BREAKERS, 0.8, base, allowed)
        if len(window) <= allowed:
            assert limit == -1
        else:
            want_limit = O.dry_repeat_limit(window, BREAKERS)
            assert limit == (want_limit if want_limit >= allowed else -1), (window, allowed)
        np.testing.assert_allclose(got, O.dry(ids, x[ids], window, BREAKERS, 0.8, base, allowed)[1], rtol=1e-6)
        assert not marks.any()  # the scratch is all zero again for the next call


def test_penalty_exponent_is_capped():
    """A repeat long enough for base^e to overflow float32 costs at most base^max_exp."""
    window = [4, 5] * 40  # the suffix repeats all the way back: 78 tokens, then token 4
    _, got, _ = _kernel_dry(np.zeros(N_VOCAB, np.float32), window, None, [], 1.0, 10.0, 2)
    max_exp = int(88.7228391 / math.log(10.0))  # 38 < 78 - 2
    assert got[4] == -np.float32(10.0**max_exp) and np.isfinite(got).all()
    np.testing.assert_array_equal(got, O.dry(np.arange(N_VOCAB), np.zeros(N_VOCAB), window, [], 1.0, 10.0, 2)[1])


def test_breaker_tables():
    t = DryTables([[3], [3, 5, 6], [1, 2]], 8, 1.75, True)
    np.testing.assert_array_equal(t.start, [0, 0, 1, 1, 3, 3, 3, 3, 3])  # heads 1 and 3: runs [0, 1), [1, 3)
    assert [t.tails[t.offset[i]:t.offset[i] + t.length[i]].tolist() for i in range(3)] == [[2], [], [5, 6]]
    assert t.max_exp == int(88.7228391 / math.log(1.75))
    assert DryTables([[3]], 8, 1.75, False).start.shape == (2,)  # off: never read
    with pytest.raises(ValueError, match="dry_breakers"):
        DryTables([[3, 8]], 8, 1.75, True)


def test_dry_breaker_sequences():
    pieces = ["a", "b\n", ":x", "ab", "x*", "*y", "c", "\n"]
    enc = {"\n": [7], "y": [9], "*y": [5]}
    seqs = dry_breaker_sequences(["\n", "*y"], pieces, lambda s: enc.get(s, [6]))
    assert [1] in seqs and [7] in seqs  # tokens containing "\n"
    assert [5] in seqs  # "*y" itself
    assert [4, 9] in seqs  # "x*" ends with the start of "*y"; "y" follows


# -- the chain's DRY step, through the Sampler ----------------------------------------------


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


