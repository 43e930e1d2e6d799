"""kernels/cuda/kv.py: writing and reading KV cache rows of every cache type on the device,
against the CPU's rows (kernels.kv_quant, bit for bit) and their exact dequantization.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
"""

import numpy as np
import pytest
from numba import cuda

from kernels import kv_types as kt
from kernels.cuda.kv import is_block, kv_at, put_block, put_elem
from kernels.kv_quant import dequantize_rows, quantize_rows
from tests.oracles.cuda import dev, host

DIM = 64


@cuda.jit
def _store(rows, half, x, t):
    """Row p <- x[p] for block p (put_elem by element, put_block by 32-value block)."""
    xs = cuda.shared.array(DIM, np.float32)
    p = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for d in range(tid, DIM, nt):
        xs[d] = x[p, d]
    cuda.syncthreads()
    if is_block(t):
        for b in range(tid, DIM // 32, nt):
            put_block(rows, half, p, xs, b, t)
    else:
        for d in range(tid, DIM, nt):
            put_elem(rows, p, d, xs[d], t)


@cuda.jit
def _load(out, rows, half, t):
    p = cuda.blockIdx.x
    for d in range(cuda.threadIdx.x, DIM, cuda.blockDim.x):
        out[p, d] = kv_at(rows, half, p, d, t)


def _device_rows(t, n):
    dtype = np.float16 if t == kt.F16 else kt.storage_dtype(t)
    rows = dev(np.zeros((n, kt.row_width(t, DIM)), dtype))
    return rows, (rows.view(np.float16) if kt.is_quantized(t) else rows)


def _host_rows(rows):
    a = host(rows)
    return a.view(np.uint16) if a.dtype == np.float16 else a


@pytest.mark.parametrize("name", list(kt.NAMES))
def test_device_rows_equal_the_cpu_rows(name):
    t = kt.NAMES[name]
    rng = np.random.default_rng(len(name))
    x = (rng.standard_normal((4, DIM)) * 10.0 ** rng.uniform(-3, 3, (4, 1))).astype(np.float32)
    x[0, :32] = 0.0  # a zero block
    x[1] = np.round(x[1] * 2) / 2 + np.float32(0.0)  # ties
    rows, half = _device_rows(t, len(x))
    _store[len(x), 32](rows, half, dev(x), t)
    want = quantize_rows(x, t)
    np.testing.assert_array_equal(_host_rows(rows), want)
    out = dev(np.full(x.shape, np.nan, np.float32))
    _load[len(x), 32](out, rows, half, t)
    np.testing.assert_allclose(host(out), dequantize_rows(want, t), rtol=1e-6, atol=1e-30)
