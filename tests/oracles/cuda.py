"""Host <-> device copies for the CUDA kernel tests (simulator or device)."""

import numpy as np
from numba import cuda

from kernels.cuda.launch import simulated


def dev(a):
    """Host array -> device copy."""
    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    return d.copy_to_host()


def assert_device_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal float32 bits; NaN-safe on a GPU, whose arithmetic returns one canonical NaN.

    Under the simulator (NumPy arithmetic) NaN payloads must match too.
    """
    assert got.dtype == np.float32 and got.shape == want.shape, what
    g, w = got.view(np.uint32), want.view(np.uint32)
    if simulated():
        assert np.array_equal(g, w), what
        return
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), what
    assert np.array_equal(g[~nan], w[~nan]), what
