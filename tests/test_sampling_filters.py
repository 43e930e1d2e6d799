"""kernels/sampling_filters.py, kernel by kernel, against tests/oracles/sampling.py.

Cut-offs are compared at parameters chosen halfway between two of the oracle's running
sums (top_p, typical), so float32 and float64 arithmetic cannot put a token on either side;
masks compare values (the same float32 operations: equal), penalties to one rounding.
"""

import math

import numpy as np
import pytest

from kernels import sampling as K
from kernels import sampling_filters as F
from tests.oracles import sampling as O

RNG = np.random.default_rng(23)
HIST = np.array([5, 9, 5, 17, 3, 5, 9, 250, 17, 17, 2, 9], np.int32)


def _logits(n, scale=2.0):
    return (RNG.standard_normal(n) * scale).astype(np.float32)


def _midpoints(cum, k=6):
    """k parameters strictly between consecutive running sums (the first few and some later)."""
    picks = sorted(set(np.linspace(0, len(cum) - 2, k).astype(int)))
    return [(cum[i] + cum[i + 1]) / 2 for i in picks]


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "compact"])
def test_penalties(dense):
    x = _logits(300)
    ids = np.arange(300, dtype=np.int32) if dense else RNG.permutation(300)[:40].astype(np.int32)
    ids[:3] = [5, 9, 250] if not dense else ids[:3]  # some penalized tokens in the compact set
    vals = x.copy() if dense else x[ids]
    counts = np.zeros(300, np.int32)
    F.apply_penalties(vals, counts, ids, HIST, dense, len(ids), np.float32(1.3), np.float32(0.4), np.float32(0.25))
    want = O.penalties(ids, x[ids], HIST, 1.3, 0.4, 0.25)[1]
    # fast math may fuse c * freq + present into one FMA: one rounding less, of the penalty's size
    np.testing.assert_array_less(np.abs(vals - want), 2 * 2.0**-24 * (np.abs(want) + 3 * 0.4 + 0.25))
    assert not counts.any()  # the scratch is all zero again


def test_top_n_sigma_mask():
    x = _logits(500)
    x[RNG.choice(500, 50, replace=False)] = -np.inf  # masked tokens count for neither mean nor std
    for nsigma in (0.5, 1.0, 2.5):
        got = x.copy()
        F.top_n_sigma_mask(got, 500, np.float32(nsigma))
        want = O.top_n_sigma(np.arange(500), x, nsigma)[1]
        fin = x[np.isfinite(x)].astype(np.float64)
        near = np.abs(x - (fin.max() - nsigma * fin.std())) < 1e-4  # float32 std: either side
        np.testing.assert_array_equal(got[~near], want[~near])


def test_top_p_cut_on_sorted_candidates():
    x = np.sort(_logits(200))[::-1].copy()
    q = O.softmax(x)
    m, s = x[0], float(np.sum(np.exp(x.astype(np.float64) - x[0])))
    for p in _midpoints(np.cumsum(q), 12):
        want = len(O.top_p(np.arange(200), x, p)[0])
        assert F.top_p_cut(x, 200, m, s, p, 0) == want
        keep = min(want + 5, 200)
        assert F.top_p_cut(x, 200, m, s, p, keep) == keep  # min_keep wins
    assert F.top_p_cut(x, 200, m, s, 1.5, 0) == -1


@pytest.mark.parametrize("n", [300, 50_000])
def test_top_p_filter_without_a_full_sort(n):
    """The bracket search and its partial sort give the oracle's set, for short and long rows."""
    x = _logits(n, scale=3.0)
    x[:40] = x[40]  # ties at the cut must go to the earlier position
    q = O.softmax(x)
    cum = np.cumsum(np.sort(q)[::-1])
    buf = [np.zeros(n, np.int32), np.zeros(n, np.float32), np.zeros(n, np.float32)]
    for p in _midpoints(cum[: min(n, 3000)]):
        out_ids, out_vals = np.zeros(n, np.int32), np.zeros(n, np.float32)
        c = F.top_p_filter(out_ids, out_vals, buf[0], buf[1], buf[2], np.zeros(0, np.int32), x, True, n, p, 0)
        want = O.top_p(np.arange(n), x, p)[0]
        np.testing.assert_array_equal(np.sort(out_ids[:c]), np.sort(want))
        np.testing.assert_array_equal(out_vals[:c], x[out_ids[:c]])
    assert F.top_p_filter(out_ids, out_vals, buf[0], buf[1], buf[2], np.zeros(0, np.int32), x, True, n, 0.5,
                          n + 1) == -1  # fewer than min_keep entries


def test_typical_order():
    x = _logits(120)
    probs = np.zeros(120, np.float32)
    K.softmax(probs, x, 120)
    q = O.softmax(x)
    h = -np.sum(q * np.log(q))
    cum = np.cumsum(q[np.argsort(np.abs(-np.log(q) - h), kind="stable")])
    order = np.zeros(120, np.int64)
    for p in _midpoints(cum, 8):
        for min_keep in (0, 30):
            c = F.typical_order(order, probs, 120, p, min_keep)
            np.testing.assert_array_equal(order[:c], O.typical(np.arange(120), x, p, min_keep)[0])


def test_xtc_cut_entropy_and_gather():
    probs = np.float32([0.4, 0.3, 0.2, 0.06, 0.04])
    assert [F.xtc_cut(probs, 5, t) for t in (0.5, 0.3, 0.2, 0.01)] == [0, 1, 2, 4]
    p64 = probs.astype(np.float64)
    assert math.isclose(F.entropy(probs, 5), -float(np.sum(p64 * np.log(p64))), rel_tol=1e-12)
    out_ids, out_vals = np.zeros(3, np.int32), np.zeros(3, np.float32)
    F.gather(out_ids, out_vals, np.int32([7, 8, 9, 10]), probs, np.int64([3, 0, 2]), False, 3)
    assert out_ids.tolist() == [10, 7, 9] and out_vals.tolist() == probs[[3, 0, 2]].tolist()
    F.gather(out_ids, out_vals, np.zeros(0, np.int32), probs, np.int64([4, 1, 0]), True, 3)
    assert out_ids.tolist() == [4, 1, 0]


@pytest.mark.parametrize("mu", [2.0, 6.0, 10.0])
def test_mirostat_k(mu):
    """Mirostat 1's k from the 100 largest logits: the oracle's estimate of the Zipf exponent."""
    x = np.sort(_logits(3000))[::-1].copy()
    got = F.mirostat_k(x, 100, 3000, mu)
    assert max(int(got), 1) == len(O.mirostat1(np.arange(3000), x, mu, 3000)[0])
    assert F.mirostat_k(np.ones(1, np.float32), 1, 3000, mu) == 1.0  # one candidate: no slope to fit
