"""kernels/sampling.py: top-k selection, softmax, draws and the threshold filters, against NumPy.

top_k_select must give np.argsort's stable descending order (ties: lower position first)
for any cap; the draw must pick the oracle's position for every uniform u.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels import sampling as K
from tests.oracles import sampling as O


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


# -- softmax and draws -----------------------------------------------------------------------


def test_sample_dist_kernel_matches_reference():
    x = (np.random.default_rng(13).standard_normal(50) * 2.0).astype(np.float32)
    probs = np.zeros(50, np.float32)
    for u in np.linspace(0, 0.999999, 97):
        assert K.sample_dist(probs, x, 50, u) == O.dist(x, u)
    np.testing.assert_allclose(probs, O.softmax(x), rtol=1e-5)


def test_softmax_and_its_parts():
    x = (np.random.default_rng(14).standard_normal(300) * 3).astype(np.float32)
    x[::7] = -np.inf  # masked tokens: probability 0
    probs = np.full(300, np.nan, np.float32)
    m, s = K.softmax(probs, x, 300)
    np.testing.assert_allclose(probs, O.softmax(x), rtol=1e-5, atol=1e-12)
    assert np.all(probs[::7] == 0) and m == x.max() == K.max_logit(x, 300)
    np.testing.assert_allclose(s, np.sum(np.exp(x.astype(np.float64) - m)), rtol=1e-5)
    assert K.exp_sum(x, 300, m) == s  # the same float32 lanes
    ninf = np.full(70, -np.inf, np.float32)
    assert K.sample_dist(probs, ninf, 70, 0.5) == -1 and not probs[:70].any()


@pytest.mark.parametrize("keep", [0.01, 0.5, 1.0], ids=["sparse", "half", "all"])
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "compact"])
def test_filter_at_least(dense, keep):
    """Both the chunk-skipping (few kept) and the branchless (many kept) paths, in place too."""
    x = np.random.default_rng(15).standard_normal(1000).astype(np.float32)
    thr = np.float32(np.quantile(x, 1 - keep)) if keep < 1 else np.float32(x.min())
    ids = np.arange(1000) if dense else np.random.default_rng(1).permutation(5000)[:1000]
    ids = ids.astype(np.int32)
    assert K.count_at_least(x, 1000, thr) == np.sum(x >= thr)
    out_i, out_v = ids.copy(), x.copy()
    c = K.filter_at_least(out_i, out_v, out_i, out_v, dense, 1000, thr)  # out aliases the input
    np.testing.assert_array_equal(out_i[:c], ids[x >= thr])
    np.testing.assert_array_equal(out_v[:c], x[x >= thr])


def test_greedy_scale_and_bias():
    x = np.float32([1.0, 3.0, -2.0, 3.0])
    out = np.zeros(4, np.float32)
    assert K.greedy_mask(out, x, 4) == 1  # the first maximum
    np.testing.assert_array_equal(out, [-np.inf, 3.0, -np.inf, -np.inf])
    K.scale_logits(out, x, 4, np.float32(0.5))
    np.testing.assert_array_equal(out, x / np.float32(0.5))
    K.add_logit_bias(x, np.int32([2, 0, 2]), np.float32([1.5, -1.0, 0.25]), 2)  # only the first n_bias
    np.testing.assert_array_equal(x, [0.0, 3.0, -0.5, 3.0])
