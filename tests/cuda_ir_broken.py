"""Deliberately broken kernels: tests/cuda_ir.py's checks must report each one
(tests/test_cuda_compile.py runs `python -m tests.cuda_ir --self-test`)."""

import math

import numpy as np
from numba import cuda

from kernels._jit import cuda_exact_device, cuda_exact_kernel, cuda_kernel
from tests.cuda_ir import C, f4, i8


@cuda_kernel
def _bad_unify(out, n):
    """A variable that is a float32 on one path and a tuple on the other: no common type."""
    if n > 1:
        v = out[0]
    else:
        v = (1.0, 2.0)
    out[1] = v


@cuda_kernel
def _bad_numpy(out, x):
    """Allocating an array in a kernel (cuda.local.array is the way)."""
    out[0] = np.zeros(4, np.float32)[0] + x[0]


@cuda_exact_device
def _product(a, b):
    return a * b


@cuda_kernel
def _bad_device_call(out, x):
    """A device function called with one argument too few: typed in compile_device()."""
    out[0] = _product(x[0])


@cuda_exact_kernel
def _bad_fma(out, a, b, c):
    """An exact kernel whose plain product feeds an add: NVVM fuses it."""
    i = cuda.grid(1)
    out[i] = a[i] * b[i] + c[i]


@cuda_exact_kernel
def _bad_fma_call(out, a, b):
    """The same, with the product made in a device function (inlined before the check)."""
    i = cuda.grid(1)
    out[i] = _product(a[i], b[i]) - b[i]


@cuda_kernel
def _bad_double(out, x):
    """float32 times a Python float: numba computes it in float64."""
    i = cuda.grid(1)
    out[i] = x[i] * math.pi + 0.5


_V = C(f4, 1)
SELF_TEST = [
    ("tests.cuda_ir_broken", "_bad_unify", (_V, i8)),
    ("tests.cuda_ir_broken", "_bad_numpy", (_V, _V)),
    ("tests.cuda_ir_broken", "_bad_device_call", (_V, _V)),
    ("tests.cuda_ir_broken", "_bad_fma", (_V, _V, _V, _V)),
    ("tests.cuda_ir_broken", "_bad_fma_call", (_V, _V, _V)),
    ("tests.cuda_ir_broken", "_bad_double", (_V, _V)),
]
