"""Grid and block sizes for every CUDA launch, chosen here and nowhere else; device discovery.

Why these sizes: 128 threads (4 warps) per block keeps several blocks resident per SM on every
card since Pascal, and one block per row lets a reduction stay in shared memory. The decode
matmul gives each output row one warp (32 lanes reading consecutive bytes: coalesced) and packs
4 rows per block. The prefill GEMM computes 16 x 16 output tiles from 32-wide K slices held in
shared memory. Reductions use shared memory, not warp shuffles: the simulator has no shuffles,
and the same code must run in both.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


def simulated() -> bool:
    """True when numba.cuda is the CPU simulator (NUMBA_ENABLE_CUDASIM=1)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


THREADS = 128  # elementwise kernels
ROW_THREADS = 128  # one block per row: norms, softmax, reductions over a row (power of two)
GEMV_LANES = 32  # threads per output row in the decode matmul (power of two)
GEMV_ROWS = 4  # output rows per decode-matmul block
GEMV_MAX_TOKENS = 8  # tokens one decode-matmul pass accumulates in registers
TILE = 16  # prefill GEMM: TILE x TILE outputs per block (tokens x rows)
TILE_K = 32  # prefill GEMM: K slice staged in shared memory (one quant block)
ATTN_PREFILL_MIN_TOKENS = 8  # from here on attention's shared K/V tiles beat a block per (token, head)
ATTN_SMEM = 12032  # float32 words of the prefill attention tile (47 KiB: under the 48 KiB static limit)
MAX_HEAD_DIM = 256  # per-head kernels keep one head in shared memory
PER_THREAD = 16  # grid-stride passes over logits: elements per thread before another block pays off

if simulated():
    # The simulator runs every thread as a Python thread (about 0.2 ms each, 2 ms with a few
    # barriers, measured): small blocks keep the kernel tests in seconds. Kernels read their
    # geometry from blockDim, so the same code runs the GPU sizes above; shared arrays are
    # sized by these constants.
    THREADS = ROW_THREADS = 32
    GEMV_LANES, GEMV_ROWS = 4, 4
    TILE = 4
    GEMV_MAX_TOKENS = ATTN_PREFILL_MIN_TOKENS = 2  # so 3-token prompts take the prefill paths
    # Its block manager busy-polls the block's threads for barriers: under Python's default
    # 5 ms GIL switch interval every barrier costs milliseconds. 50 us made the tiny-model
    # forward about 10x faster (measured); this only ever runs under the simulator.
    sys.setswitchinterval(5e-5)


def _fix_simulator_shared_arrays() -> None:
    """numba-cuda 0.30's simulator allocates a block's shared array on first use with an
    unlocked get-then-set: two threads switching in between would get private copies and
    the block would compute garbage. The short switch interval above makes that likelier.
    Same allocation rule (one array per block and source line), under a lock."""
    import threading
    import traceback

    import numpy as np
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    orig, lock = kernelapi.FakeCUDAShared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory / unsupported: as before
            return orig(self, shape, dtype, alignment)
        caller = traceback.extract_stack(sys._getframe(1), limit=1)[0][0:2]
        dt = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dt)
        return res

    kernelapi.FakeCUDAShared.array = array


if simulated():
    _fix_simulator_shared_arrays()


def _ceil(a: int, b: int) -> int:
    return (a + b - 1) // b


def prefill_tiles(head_dim: int) -> tuple[int, int]:
    """(bq, bk) for prefill attention: queries per block and keys per staged K/V tile.

    TILE queries and at most 4 * TILE keys; bq shrinks for wide heads so that Q and O
    (bq * head_dim each) leave room in ATTN_SMEM for the K/V tiles, the scores and 3
    floats per query (see kernels.cuda.attention).
    """
    bq = max(1, min(TILE, 2048 // head_dim))
    fixed = 2 * bq * head_dim + 3 * bq
    bk = min(4 * TILE, (ATTN_SMEM - fixed) // (2 * head_dim + 1 + bq))
    return bq, bk


def stride_blocks(n: int, threads: int, cap: int) -> tuple[int, int]:
    """(grid, block) for a grid-stride pass over n logits: PER_THREAD each, at most cap blocks."""
    return max(1, min(cap, _ceil(n, threads * PER_THREAD))), threads


def elementwise(n: int) -> tuple[int, int]:
    """(grid, block) for one thread per element of n."""
    return max(1, _ceil(n, THREADS)), THREADS


def one_block(threads: int = ROW_THREADS) -> tuple[int, int]:
    """(grid, block) for a single cooperating block (a final merge or sort of a few candidates)."""
    return 1, threads


def rows(n_rows: int) -> tuple[int, int]:
    """(grid, block) for one ROW_THREADS block per row."""
    return max(1, n_rows), ROW_THREADS


def gemv(n_rows: int) -> tuple[int, tuple[int, int]]:
    """(grid, (lanes, rows)) for the decode matmul: one warp per output row."""
    return max(1, _ceil(n_rows, GEMV_ROWS)), (GEMV_LANES, GEMV_ROWS)


def gemm(n_tokens: int, n_rows: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((row tiles, token tiles), (TILE, TILE)) for the prefill GEMM."""
    return (max(1, _ceil(n_rows, TILE)), max(1, _ceil(n_tokens, TILE))), (TILE, TILE)


def _driver_present() -> bool:
    """Cheap check before importing numba.cuda: is there a CUDA driver library at all?"""
    return ctypes.util.find_library("cuda") is not None or os.path.exists("/dev/nvidia0")


def has_gpu() -> bool:
    """A real CUDA device is usable (the simulator does not count)."""
    if simulated() or not _driver_present():
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # no numba-cuda, or a driver that fails to initialise
        return False


_TOOLCHAIN: list[str] = []  # the probe's result, once per process


def toolchain_error() -> str:
    """Why kernels cannot be compiled for the current device ("" when they can): a GPU with a
    driver but without NVVM/libdevice (numba-cuda's cu12/cu13 extras) fails at the first
    launch otherwise. Compiles a one-line kernel to PTX once; nothing to check for the simulator."""
    if simulated():
        return ""
    if not _TOOLCHAIN:
        try:
            from numba import cuda

            def probe(out):
                out[0] = 1.0

            cuda.compile_ptx_for_current_device(probe, "void(float32[:])")
            _TOOLCHAIN.append("")
        except Exception as e:  # missing NVVM, libdevice or NVRTC, or a driver too old
            _TOOLCHAIN.append(f"{type(e).__name__}: {e}".splitlines()[0])
    return _TOOLCHAIN[0]


def usable() -> bool:
    """Kernels can launch: a real device, or the simulator when it was asked for."""
    if simulated():
        return True
    return has_gpu()


def devices() -> list[tuple[str, str, int, int]]:
    """(llama.cpp-style name, description, total MiB, free MiB) of every usable device."""
    if simulated():
        return [("CUDA0", "CUDA simulator (NUMBA_ENABLE_CUDASIM)", 0, 0)]
    if not has_gpu():
        return []
    from numba import cuda

    out = []
    for i, gpu in enumerate(cuda.gpus):
        with gpu:
            free, total = cuda.current_context().get_memory_info()
            out.append((f"CUDA{i}", _describe(cuda.get_current_device()), total >> 20, free >> 20))
    return out


def select(index: int) -> str:
    """Make device `index` current for this thread (the engine's); returns it in words."""
    found = devices()
    if not 0 <= index < len(found):
        raise ValueError(f"no device CUDA{index}: {len(found)} found (--list-devices shows them)")
    if not simulated():
        from numba import cuda

        cuda.select_device(index)
    return found[index][1]


def _describe(d) -> str:
    name = d.name.decode() if isinstance(d.name, bytes) else str(d.name)
    return f"{name} (compute {d.compute_capability[0]}.{d.compute_capability[1]})"
