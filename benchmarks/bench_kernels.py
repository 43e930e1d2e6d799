"""Kernel benchmark: quantized matvec/matmul throughput against this machine's own peers.

Measured in one run, on the same machine:
- memory bandwidth: a Numba prange sum over 512 MB of float32 on all threads;
- per type and shape (n, k) of the real models' matrices:
  decode (1 token) GB/s of weight bytes with the matrix in cache, and streaming a
  model-sized set (>= 256 MB) of distinct copies from memory;
  prefill (512 tokens) GOP/s, against NumPy-BLAS float32 GEMM on the dequantized matrix.
Prints a table and the ratios (streaming GB/s / bandwidth, prefill / BLAS). Decode matvecs
run back to back from one jitted loop, as the engine's jitted layers call them (Python's
dispatch is not counted; the activations are quantized once, outside).
GB/s counts the tensor's bytes in the GGUF file (what a decode step must read), and in
brackets the bytes of our packed layout (what the kernel actually reads).
Usage: python benchmarks/bench_kernels.py [--types Q4_0,Q8_0] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from gguf import GGML_QUANT_SIZES  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

from kernels import _jit  # noqa: E402
from kernels.matmul import Activations, matmul, pack  # noqa: E402
from kernels.qmatmul import fmatmul, qmatmul  # noqa: E402
from tests.oracles.quant_blocks import random_matrix  # noqa: E402

SHAPES = [(576, 1536), (1536, 576), (640, 2048), (49152, 576), (262144, 640)]
TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
         T.IQ4_NL, T.IQ4_XS, T.IQ1_S, T.IQ1_M, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S,
         T.TQ1_0, T.TQ2_0, T.MXFP4, T.F16, T.BF16, T.F32]
TARGETS = {T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q5_0, T.Q6_K}
PREFILL_TOKENS = 512
STREAM_BYTES = 256 << 20


@_jit.parallel_kernel
def _sum(a):
    """Sum of a uint32 array, split over threads (the bandwidth probe)."""
    n_chunks = 64
    per = a.shape[0] // n_chunks
    parts = np.zeros(n_chunks, np.uint32)
    for c in numba.prange(n_chunks):
        b = a[c * per : (c + 1) * per]  # a slice and a range index: no negative-index fix-up
        s = np.uint32(0)
        for i in range(b.shape[0]):
            s += b[i]
        parts[c] = s
    return parts.sum()


@_jit.kernel
def _stream(y, xq, dx, sx, wide, x, qs, d, m, w, n, k, width, bs, is_float, sym, copies, reps):
    """reps matvecs from one jitted loop (as the engine calls them), cycling over `copies`
    equal-sized matrices laid end to end in qs/d/m/w."""
    nq, nd, nw = qs.shape[0] // copies, d.shape[0] // copies, w.shape[0] // copies
    for r in range(reps):
        c = r % copies
        if is_float:
            fmatmul(y, x, w[c * nw : (c + 1) * nw], n, k)
        else:
            mc = m[c * nd : (c + 1) * nd] if m.shape[0] else m
            qmatmul(y, xq, dx, sx, wide, qs[c * nq : (c + 1) * nq], d[c * nd : (c + 1) * nd], mc, n, k, width, bs, sym)


def best_time(fn, min_reps: int = 3, budget: float = 0.3) -> float:
    """Best mean time per call over a few batches of calls filling about `budget` seconds."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(min_reps, int(budget / 3 / one))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def bandwidth(arrays=None) -> float:
    """GB/s of a threaded sum over `arrays` (default: 512 MB of fresh memory).

    This VM's bandwidth drifts between about 36 and 65 GB/s from one allocation to the
    next, so each row also measures it over the very pages its streaming matvec reads."""
    arrays = arrays or [np.ones(128 << 20, np.uint32)]
    views = [a.view(np.uint8)[: a.nbytes // 256 * 256].view(np.uint32) for a in arrays if a.nbytes >= 256]
    nbytes = sum(v.nbytes for v in views)
    return nbytes / best_time(lambda: [_sum(v) for v in views], 3, 0.5) / 1e9


def blas_gflops(w: np.ndarray, x: np.ndarray) -> float:
    y = np.empty((x.shape[0], w.shape[0]), np.float32)
    t = best_time(lambda: np.matmul(x, w.T, out=y), 2, 1.0)
    time.sleep(0.3)  # let OpenBLAS's spinning workers park before Numba's pool runs again
    return 2 * w.size * x.shape[0] / t / 1e9


def run(types, shapes, quick: bool) -> None:
    rng = np.random.default_rng(0)
    print(f"machine: {os.cpu_count()} cpus, numba threads {numba.get_num_threads()}, "
          f"VNNI kernels: {_jit.has_vnni512()}, numpy {np.__version__}")
    print(f"memory bandwidth (prange sum, 512 MB of fresh memory): {bandwidth():.1f} GB/s\n")
    hdr = (f"{'type':7} {'n x k':>13} {'decode cache GB/s':>20} {'decode stream GB/s':>20} {'BW GB/s':>8} "
           f"{'stream/BW':>9} {'prefill GOP/s':>13} {'BLAS f32 GFLOP/s':>16} {'ratio':>6}")
    print(hdr)
    print("-" * len(hdr))
    for qt in types:
        for n, k in shapes:
            if k % GGML_QUANT_SIZES[qt][0]:
                continue  # super-block types need rows that are whole 256-weight blocks
            data = random_matrix(qt, n, k, rng, scale=0.05)
            w = pack(data, qt, n, k)
            x1 = rng.standard_normal((1, k)).astype(np.float32)
            y1 = np.zeros((1, n), np.float32)
            act1 = Activations(1, k).set(x1)
            # Distinct copies, laid end to end, enough to far exceed the caches (streaming),
            # or a single one read again and again (in cache).
            n_copies = max(2, STREAM_BYTES // w.nbytes)
            many = [np.tile(a, n_copies) for a in (w.qs, w.d, w.m, w.w)]
            args = (y1, act1.xq[:1], act1.dx[:1], act1.sx[:1], act1.wide, x1)
            mat = (w.n, w.k, w.width, max(w.bs, 16), w.is_float, w.sym)
            reps = max(8, int(2e8 // w.nbytes))
            t_cache = best_time(lambda: _stream(*args, w.qs, w.d, w.m, w.w, *mat, 1, reps), 2, 0.2) / reps
            t_stream = best_time(lambda: _stream(*args, *many, *mat, n_copies, reps), 2, 0.3) / reps
            bw = bandwidth(many)
            del many
            row = (f"{qt.name:7} {n:>6}x{k:<6} {w.src_nbytes / t_cache / 1e9:7.1f} [{w.nbytes / t_cache / 1e9:6.1f}] "
                   f"     {w.src_nbytes / t_stream / 1e9:7.1f} [{w.nbytes / t_stream / 1e9:6.1f}] {bw:8.1f}      "
                   f"{w.src_nbytes / t_stream / 1e9 / bw:5.2f}")
            if n * k <= 2048 * 2048 and not quick:
                xp = rng.standard_normal((PREFILL_TOKENS, k)).astype(np.float32)
                yp = np.zeros((PREFILL_TOKENS, n), np.float32)
                actp = Activations(PREFILL_TOKENS, k)
                t_pre = best_time(lambda: matmul(yp, actp.set(xp), w), 2, 0.5)
                gops = 2 * n * k * PREFILL_TOKENS / t_pre / 1e9
                blas = blas_gflops(dequantize(data, qt).reshape(n, k), xp)
                row += f" {gops:13.0f} {blas:16.0f} {gops / blas:6.2f}"
            print(row + ("  *" if qt in TARGETS else ""), flush=True)
    print("\n* target types: streaming decode >= 0.8x bandwidth, prefill >= 2x BLAS float32")
    print("GB/s count the tensor's GGUF bytes; [brackets]: the bytes of the packed layout actually read.")
    print("BW: a threaded sum over the same pages the streaming matvec read; stream/BW uses GGUF bytes.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", help="comma-separated GGML type names (default: all)")
    ap.add_argument("--shapes", help="comma-separated NxK (default: the real models' shapes)")
    ap.add_argument("--quick", action="store_true", help="decode only")
    a = ap.parse_args()
    types = [T[s.strip().upper()] for s in a.types.split(",")] if a.types else TYPES
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")] if a.shapes else SHAPES
    run(types, shapes, a.quick)


if __name__ == "__main__":
    main()
