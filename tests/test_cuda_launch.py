"""kernels/cuda/launch.py: launch geometry that covers every element, tiles that fit shared memory,
device discovery under the simulator, and the simulator's shared arrays (one per block).

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
"""

import numpy as np
import pytest
from numba import cuda

from kernels.cuda import launch
from kernels.cuda.launch import TILE
from tests.oracles.cuda import dev, host

SIZES = [0, 1, 31, 32, 33, 127, 128, 129, 4095, 100_000]


def test_prefill_tiles_fit_shared_memory():
    for hd in (8, 64, 128, 256):
        bq, bk = launch.prefill_tiles(hd)
        assert 1 <= bq <= TILE and bk >= 1
        assert 2 * bq * hd + bk * (2 * hd + 1) + bq * bk + 3 * bq <= launch.ATTN_SMEM


@pytest.mark.parametrize("n", SIZES)
def test_one_thread_per_element_covers_every_element(n):
    grid, block = launch.elementwise(n)
    assert block == launch.THREADS and grid >= 1 and grid * block >= n and (grid - 1) * block < max(n, 1)
    assert launch.rows(n) == (max(n, 1), launch.ROW_THREADS)
    grid, (lanes, rows) = launch.gemv(n)
    assert (lanes, rows) == (launch.GEMV_LANES, launch.GEMV_ROWS) and grid * rows >= n and grid >= 1
    (row_tiles, tok_tiles), tile = launch.gemm(3, n)
    assert tile == (TILE, TILE) and row_tiles * TILE >= n and tok_tiles * TILE >= 3


@pytest.mark.parametrize("n", SIZES)
def test_grid_stride_blocks_are_capped(n):
    for cap in (1, 4, 1000):
        grid, block = launch.stride_blocks(n, launch.ROW_THREADS, cap)
        assert block == launch.ROW_THREADS and 1 <= grid <= cap
        assert grid == cap or grid * block * launch.PER_THREAD >= n  # uncapped: PER_THREAD each at most
        assert grid == 1 or (grid - 1) * block * launch.PER_THREAD < n  # no block without work


def test_block_sizes_suit_the_tree_reductions():
    for threads in (launch.ROW_THREADS, launch.GEMV_LANES, launch.THREADS):
        assert threads & (threads - 1) == 0  # kernels.cuda.reduce halves the block each step


@pytest.mark.skipif(not launch.simulated(), reason="simulator only")
def test_the_simulator_is_a_device_but_not_a_gpu():
    assert launch.usable() and not launch.has_gpu() and launch.toolchain_error() == ""
    assert [d[0] for d in launch.devices()] == ["CUDA0"]
    assert "simulator" in launch.select(0)
    with pytest.raises(ValueError, match="no device CUDA1"):
        launch.select(1)


@cuda.jit
def _shared_sum(out):
    """Each thread writes its index into the block's shared array; thread 0 sums them."""
    buf = cuda.shared.array(128, np.int32)
    t = cuda.threadIdx.x
    buf[t] = t + 1
    cuda.syncthreads()
    if t == 0:
        s = 0
        for i in range(cuda.blockDim.x):
            s += buf[i]
        out[cuda.blockIdx.x] = s


def test_threads_of_a_block_share_one_shared_array():
    """The simulator's first-use allocation must hand every thread the same array (see the lock)."""
    for _ in range(5):
        out = dev(np.zeros(4, np.int32))
        _shared_sum[4, 32](out)
        np.testing.assert_array_equal(host(out), [32 * 33 // 2] * 4)
