"""kernels/cuda/sampling.py: CUDA softmax and top-p against the CPU sampler kernels.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Rows are short (the simulator runs each thread as a Python thread) but long enough for several
blocks. Top-k (kernels/cuda/top_k.py) is in test_cuda_top_k.py.
"""

import numpy as np
import pytest

from kernels import sampling as cpu
from kernels import sampling_filters as cpu_filters
from kernels.cuda import sampling as gpu
from kernels.cuda.launch import ROW_THREADS
from tests.oracles.cuda import dev, host

RNG = np.random.default_rng(5)
NINF = np.float32(-np.inf)


def _cpu_softmax(x):
    probs = np.empty_like(x)
    m, s = cpu.softmax(probs, x, x.shape[0])
    return probs, m, s


def _cpu_top_k(x, k):
    n = x.shape[0]
    cap = max(min(n, 2 * k), 1)
    ids, vals = np.empty(n, np.int32), np.empty(n, np.float32)
    bi, bv, tmp = np.empty(cap, np.int32), np.empty(cap, np.float32), np.empty(cap, np.float32)
    kk = cpu.top_k_select(ids, vals, bi, bv, tmp, ids, x, True, n, k, cap, True)
    return ids[:kk], vals[:kk]


def _row(n, n_ninf=0):
    x = (RNG.standard_normal(n) * 3).astype(np.float32)
    x[RNG.choice(n, n_ninf, replace=False)] = NINF
    return x


@pytest.mark.parametrize("n,n_ninf", [(1, 0), (37, 5), (40 * ROW_THREADS, 300)])
def test_softmax_matches_cpu(n, n_ninf):
    """One block and several (the last case: more logits than one block's share); -inf -> 0."""
    x = _row(n, n_ninf)
    want, m, s = _cpu_softmax(x)
    work = gpu.new_work()
    d_probs = dev(np.full(n, np.nan, np.float32))
    stats = host(gpu.softmax(d_probs, dev(x), n, work))
    got = host(d_probs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    assert np.all(got[x == NINF] == 0)
    assert stats[0] == m
    np.testing.assert_allclose(stats[1], s, rtol=1e-5)


def test_softmax_of_only_minus_inf_is_zero():
    x = np.full(20, NINF)
    d_probs = dev(np.full(20, np.nan, np.float32))
    gpu.softmax(d_probs, dev(x), 20, gpu.new_work())
    assert np.all(host(d_probs) == 0) and np.all(_cpu_softmax(x)[0] == 0)


def test_softmax_uses_only_the_first_n():
    x = _row(30)
    d_probs = dev(np.full(30, -1.0, np.float32))
    gpu.softmax(d_probs, dev(x), 25, gpu.new_work())
    got = host(d_probs)
    np.testing.assert_allclose(got[:25], _cpu_softmax(x[:25])[0], rtol=1e-5, atol=1e-8)
    assert np.all(got[25:] == -1.0)



def test_top_p_on_device_candidates():
    """softmax -> top_k -> top_p all on the device; the CPU cut over the same candidates."""
    n, k = 200, 24
    x = _row(n, n_ninf=10)
    probs, m, s = _cpu_softmax(x)
    cand_ids, cand = _cpu_top_k(x, k)
    mass = float(probs[cand_ids].sum())  # what the 24 candidates hold, < 1
    work = gpu.new_work()
    d_x = dev(x)
    stats = gpu.softmax(dev(np.empty(n, np.float32)), d_x, n, work)
    gpu.top_k(work.ids, work.vals, d_x, n, k, work)
    cuts = []
    for p, min_keep in [(0.0, 0), (0.0, 4), (0.3 * mass, 1), (0.7 * mass, 0), (0.95 * mass, 3), (0.5, 30),
                        (1.0, 1), (1.5, 0)]:
        got = gpu.top_p_host(work.vals, k, stats, p, min_keep, work)
        assert got == cpu_filters.top_p_cut(np.ascontiguousarray(cand), k, m, s, p, min_keep), (p, min_keep)
        cuts.append(got)
    # p = 0 keeps one (or min_keep); the cut grows with p; no cut holds p = 1 or more than k entries
    assert cuts[:2] == [1, 4] and 1 <= cuts[2] <= cuts[3] <= cuts[4] <= k and cuts[5:] == [-1, -1, -1]


def test_top_p_boundaries():
    """Hand-made candidates: the cut lands where the running mass first reaches p."""
    vals = np.log(np.array([0.5, 0.25, 0.125, 0.125], np.float32))
    stats = dev(np.array([vals[0], 2.0], np.float32))  # max, sum of exp(v - max)
    d_vals = dev(vals)
    work = gpu.new_work()
    for p, min_keep, want in [(0.5, 0, 1), (0.6, 0, 2), (0.8, 0, 3), (0.5, 3, 3), (0.9, 5, -1)]:
        assert gpu.top_p_host(d_vals, 4, stats, p, min_keep, work) == want
        assert cpu_filters.top_p_cut(vals, 4, vals[0], 2.0, p, min_keep) == want
    with pytest.raises(ValueError):
        gpu.top_p_host(dev(np.zeros(gpu.TOP_K_MAX + 1, np.float32)), gpu.TOP_K_MAX + 1, stats, 0.5, 0, work)
