"""Block-wide reductions through shared memory (the simulator has no warp shuffles).

Every thread of the block must call them, with buf a shared float32 array of at least
blockDim.x entries; blockDim.x must be a power of two. The result is returned to every thread.
"""

from numba import cuda

from kernels._jit import cuda_device


@cuda_device
def _block_reduce(buf, v, take_max):
    """sum (or max, with take_max) of v over the block's threads (x dimension): a tree in buf."""
    t = cuda.threadIdx.x
    buf[t] = v
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            buf[t] = max(buf[t], buf[t + s]) if take_max else buf[t] + buf[t + s]
        cuda.syncthreads()
        s //= 2
    r = buf[0]
    cuda.syncthreads()  # buf may be reused right after
    return r


@cuda_device
def block_sum(buf, v):
    """sum of v over the block's threads."""
    return _block_reduce(buf, v, False)


@cuda_device
def block_max(buf, v):
    """max of v over the block's threads."""
    return _block_reduce(buf, v, True)
