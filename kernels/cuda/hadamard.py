"""The Walsh-Hadamard rotation of block-type KV caches on the device: twin of kernels.hadamard.

fwht_shared transforms a head held in shared memory (every thread of the block calls it: it
synchronises between the log2(n) butterfly stages); kernels.cuda.heads uses it on queries,
keys and values before the cache store, hadamard() on the attention output (a block per
(token, head) row).
"""

import numpy as np
from numba import cuda

from kernels._jit import cuda_device, cuda_kernel
from kernels.cuda import launch
from kernels.cuda.launch import MAX_HEAD_DIM


@cuda_device
def fwht_shared(x, hd, n, scale):
    """x[:hd] (shared float32) <- H_n on every chunk of n values, H_n times scale = 1 / sqrt(n)."""
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    cuda.syncthreads()
    h = 1
    half = n // 2
    while h < n:
        for p in range(tid, hd // 2, nt):  # butterfly p: chunk p // half, pair (i, i + h) inside it
            c = p // half
            r = p - c * half
            a = c * n + (r // h) * 2 * h + r % h
            u = x[a]
            w = x[a + h]
            x[a] = u + w
            x[a + h] = u - w
        cuda.syncthreads()
        h *= 2
    for d in range(tid, hd, nt):
        x[d] *= scale
    cuda.syncthreads()


@cuda_kernel
def _rows(x, n, scale):
    """x (rows, hd): row blockIdx.x <- H_n by chunks."""
    sh = cuda.shared.array(MAX_HEAD_DIM, np.float32)
    r = cuda.blockIdx.x
    hd = x.shape[1]
    for d in range(cuda.threadIdx.x, hd, cuda.blockDim.x):
        sh[d] = x[r, d]
    fwht_shared(sh, hd, n, scale)
    for d in range(cuda.threadIdx.x, hd, cuda.blockDim.x):
        x[r, d] = sh[d]


def scale_of(n: int) -> np.float32:
    """1 / sqrt(n) as kernels.hadamard.fwht_rows rounds it."""
    return np.float32(1.0 / np.sqrt(n))


def hadamard(x, n: int) -> None:
    """x (rows, head_dim) device float32, in place: every chunk of n values of a row <- H_n chunk."""
    if x.shape[0]:
        grid, block = launch.rows(x.shape[0])
        _rows[grid, block](x, n, scale_of(n))
