"""kernels/cuda/top_k.py: radix-select top-k against the CPU kernel and NumPy's stable sort.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Rows are short (the simulator runs each thread as a Python thread) but long enough for several
blocks, and ids of one and two bytes. The order: value descending, ties -> lower id.
"""

import numpy as np
import pytest
from numba import cuda

from kernels.cuda import top_k as gpu
from kernels.cuda.launch import THREADS
from kernels.cuda.sampling import new_work
from tests.oracles.cuda import dev, host
from tests.test_cuda_sampling import NINF, RNG, _cpu_top_k, _row


def _check_top_k(x, k, work=None):
    want_ids, want_vals = _cpu_top_k(x, k)
    ids, vals = gpu.top_k_host(dev(x), x.shape[0], k, work or new_work())
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(vals, want_vals)
    return ids


@pytest.mark.parametrize("n,k", [(1, 1), (50, 1), (50, 7), (300, 40), (300, 300), (2000, 25)])
def test_top_k_random_rows(n, k):
    _check_top_k(_row(n), k)


def test_top_k_ties_take_the_lower_id_first():
    """Few distinct values: the k-th value is shared by many ids; the cut goes inside the group."""
    x = RNG.integers(0, 4, 300).astype(np.float32)
    for k in (3, 151):
        ids = _check_top_k(x, k)
        assert np.all(np.diff(ids[x[ids] == x[ids[-1]]]) > 0)


def test_top_k_all_equal_and_signed_zeros():
    """Every key equal needs the id digits; -0.0 and +0.0 are one value (ties by id)."""
    _check_top_k(np.ones(260, np.float32), 9)
    x = np.zeros(40, np.float32)
    x[::3] = -0.0
    x[7] = 1.0
    _check_top_k(x, 12)


def test_top_k_reaches_minus_inf_entries():
    """k above the finite count: the -inf entries follow, lowest ids first."""
    x = _row(64, n_ninf=60)
    ids = _check_top_k(x, 10)
    assert np.all(x[ids[4:]] == NINF)


def test_top_k_reuses_work_and_clamps_k():
    work = new_work()
    x = _row(100)
    _check_top_k(x, 5, work)
    _check_top_k(_row(100), 33, work)  # stale histograms and state from the last call must not leak
    ids, _ = gpu.top_k_host(dev(x), 20, 500, work)  # k > n: all n, as the CPU does
    np.testing.assert_array_equal(ids, _cpu_top_k(x[:20], 500)[0])


def test_top_k_limits_are_value_errors():
    x = dev(_row(2000))
    with pytest.raises(ValueError, match="device limit"):
        gpu.top_k_host(x, 2000, gpu.TOP_K_MAX + 1, new_work())
    with pytest.raises(ValueError):
        gpu.top_k_host(x, 2000, 0, new_work())



@cuda.jit
def _keys(out, bits):
    """out[i] = the radix key of float32 bits[i]."""
    i = cuda.grid(1)
    if i < bits.shape[0]:
        out[i] = gpu._vkey(bits[i])


def test_radix_keys_order_as_the_floats_do():
    """Larger float -> larger key, equal floats (and -0.0, +0.0) -> equal keys, +-inf at the ends."""
    x = np.concatenate([RNG.standard_normal(60).astype(np.float32) * 10, np.float32([0.0, -0.0, np.inf, -np.inf]),
                        np.float32([1e-45, -1e-45, 3.4e38, -3.4e38, 1.0, 1.0])])
    out = dev(np.zeros(x.size, np.int64))
    _keys[(x.size + THREADS - 1) // THREADS, THREADS](out, dev(x.view(np.uint32)))
    keys = host(out)
    o = np.argsort(x, kind="stable")
    assert np.all(np.diff(keys[o]) >= 0)
    np.testing.assert_array_equal(np.diff(keys[o]) == 0, np.diff(x[o]) == 0)
    assert keys.min() >= 0 and keys.max() < 2**32  # four bytes: the first four radix passes


@pytest.mark.parametrize("n,k", [(200, 9), (700, 64)], ids=["one-byte-ids", "two-byte-ids"])
def test_top_k_into_callers_buffers_is_numpys_stable_order(n, k):
    x = np.round(RNG.standard_normal(n) * 4).astype(np.float32)  # many ties: the id digits decide
    work = new_work()
    out_ids, out_vals = cuda.device_array(k, np.int32), cuda.device_array(k, np.float32)
    assert gpu.top_k(out_ids, out_vals, dev(x), n, k, work) == k
    want = np.argsort(-x.astype(np.float64), kind="stable")[:k]
    np.testing.assert_array_equal(host(out_ids), want)
    np.testing.assert_array_equal(host(out_vals), x[want])
