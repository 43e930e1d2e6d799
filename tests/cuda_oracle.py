"""Shared helpers for the CUDA kernel tests (simulator or device)."""

import numpy as np
from numba import cuda


def dev(a):
    """Host array -> device copy."""
    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    return d.copy_to_host()
