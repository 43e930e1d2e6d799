"""kernels/cuda/reduce.py: block-wide sum and max through shared memory, against NumPy per block.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Integer-valued floats make every sum exact whatever the tree's order, so sums compare equal;
random floats compare to float64 within the tree's log2(threads) roundings.
"""

import numpy as np
import pytest
from numba import cuda

from kernels.cuda.launch import ROW_THREADS
from kernels.cuda.reduce import block_max, block_sum
from tests.oracles.cuda import dev, host


@cuda.jit
def _reduce(sums, maxes, x):
    """Every thread of block b stores what block_sum and block_max returned it (one shared buffer, back to back)."""
    buf = cuda.shared.array(ROW_THREADS, np.float32)
    i = cuda.grid(1)
    s = block_sum(buf, x[i])
    m = block_max(buf, x[i])  # the same buffer, reused at once
    sums[i] = s
    maxes[i] = m


def _run(x, threads):
    sums, maxes = dev(np.full_like(x, np.nan)), dev(np.full_like(x, np.nan))
    _reduce[x.size // threads, threads](sums, maxes, dev(x))
    return host(sums).reshape(-1, threads), host(maxes).reshape(-1, threads)


@pytest.mark.parametrize("threads", sorted({1, 2, 8, ROW_THREADS}))
def test_every_thread_gets_the_blocks_sum_and_max(threads):
    rng = np.random.default_rng(threads)
    x = rng.integers(-1000, 1000, 3 * threads).astype(np.float32)
    sums, maxes = _run(x, threads)
    blocks = x.reshape(3, threads)
    np.testing.assert_array_equal(sums, np.repeat(blocks.sum(axis=1, keepdims=True), threads, axis=1))
    np.testing.assert_array_equal(maxes, np.repeat(blocks.max(axis=1, keepdims=True), threads, axis=1))


def test_random_floats():
    x = np.random.default_rng(3).standard_normal(4 * ROW_THREADS).astype(np.float32)
    sums, maxes = _run(x, ROW_THREADS)
    blocks = x.reshape(4, ROW_THREADS).astype(np.float64)
    bound = np.log2(ROW_THREADS) * 2.0**-24 * np.abs(blocks).sum(axis=1)  # one rounding per tree level
    assert np.all(np.abs(sums - blocks.sum(axis=1)[:, None]) <= bound[:, None])
    np.testing.assert_array_equal(maxes[:, 0], blocks.max(axis=1))
