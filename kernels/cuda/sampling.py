"""The sampler steps that stay on the device, over one row of logits: twins of kernels.sampling
(softmax, top_k_select) and kernels.sampling_filters.top_p_cut.

- softmax: each block folds its share of the row into a running (max, sum of exp(x - max)),
  a second kernel merges the blocks' pairs and normalises; it also leaves (max, sum) in
  Work.stats for top_p. -inf logits get probability 0 (a row of only -inf: all 0).
- top_k: kernels/cuda/top_k.py (radix select, then a one-block sort), re-exported here.
- top_p: over the sorted candidates, probabilities from softmax's (max, sum), a block prefix
  sum in float64 (the CPU accumulates in float64) and the first index meeting both bounds.
Fast math: no comparison ever involves an infinite constant; exps below -87 are taken as 0.
"""

import math
from dataclasses import dataclass

import numpy as np
from numba import cuda

from kernels._jit import cuda_device, cuda_kernel
from kernels.cuda import launch
from kernels.cuda.launch import ROW_THREADS
from kernels.cuda.reduce import block_max, block_sum
from kernels.cuda.top_k import BINS, MAX_PASSES, TOP_K_MAX, top_k, top_k_host

__all__ = ["TOP_K_MAX", "Work", "new_work", "softmax", "top_k", "top_k_host", "top_p", "top_p_host"]

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_NEG = np.float32(-3.0e38)  # below every finite logit; -inf is not above it
_EXP_CUT = np.float32(-87.0)


@dataclass
class Work:
    """Device scratch for one row's sampling kernels; keep one per row and reuse it (allocating syncs)."""

    parts: object  # float32 (2, ROW_THREADS): per-block (max, sum) of softmax
    stats: object  # float32 (2,): the row's (max, sum of exp(x - max))
    hist: object  # int32 (MAX_PASSES, BINS): one histogram per radix pass
    state: object  # int64 (MAX_PASSES + 1, 4): (value prefix, id prefix, still missing, done level)
    cand: object  # int32 (TOP_K_MAX,): positions of the k best, unordered
    count: object  # int32 (1,)
    ids: object  # int32 (TOP_K_MAX,): top_k output for the host wrappers
    vals: object  # float32 (TOP_K_MAX,)
    cut: object  # int32 (1,): top_p's prefix length


def new_work() -> Work:
    """Scratch for softmax, top_k and top_p over one row."""
    e = cuda.device_array
    return Work(e((2, ROW_THREADS), np.float32), e(2, np.float32), e((MAX_PASSES, BINS), np.int32),
                e((MAX_PASSES + 1, 4), np.int64), e(TOP_K_MAX, np.int32), e(1, np.int32),
                e(TOP_K_MAX, np.int32), e(TOP_K_MAX, np.float32), e(1, np.int32))


# ---------------------------------------------------------------- softmax


@cuda_device
def _exp0(d):
    """exp(d), 0 below _EXP_CUT (and for d = -inf, which fails the compare)."""
    return math.exp(d) if d > _EXP_CUT else _ZERO


@cuda_device
def _merge(m, s, m2, s2):
    """(max, sum of exp(x - max)) of two parts given as (m, s) and (m2, s2)."""
    if m2 > m:
        return m2, s * _exp0(m - m2) + s2
    return m, s + s2 * _exp0(m2 - m)


@cuda_kernel
def _softmax_parts(parts, logits, n):
    """parts[:, b] = (max, sum of exp(x - max)) over block b's grid-stride share of logits[:n]."""
    red = cuda.shared.array(ROW_THREADS, np.float32)
    m = _NEG
    s = _ZERO
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):  # one pass: the running sum is rescaled
        m, s = _merge(m, s, logits[i], _ONE)
    mb = block_max(red, m)
    sb = block_sum(red, s * _exp0(m - mb))
    if cuda.threadIdx.x == 0:
        parts[0, cuda.blockIdx.x] = mb
        parts[1, cuda.blockIdx.x] = sb


@cuda_kernel
def _softmax_norm(probs, stats, parts, logits, n, n_parts):
    """probs[:n] = exp(logits - M) / S from the merged parts; stats = (M, S)."""
    red = cuda.shared.array(ROW_THREADS, np.float32)
    m = _NEG
    s = _ZERO
    for b in range(cuda.threadIdx.x, n_parts, cuda.blockDim.x):  # every block merges them itself
        m, s = _merge(m, s, parts[0, b], parts[1, b])
    mb = block_max(red, m)
    sb = block_sum(red, s * _exp0(m - mb))
    if cuda.blockIdx.x == 0 and cuda.threadIdx.x == 0:
        stats[0] = mb
        stats[1] = sb
    inv = _ONE / sb if sb > _ZERO else _ZERO  # sb >= 1 unless every logit is -inf
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        probs[i] = _exp0(logits[i] - mb) * inv


# ---------------------------------------------------------------- top-p


@cuda_kernel
def _top_p(cut, vals, stats, n, p, min_keep):
    """cut[0] = shortest prefix of vals[:n] (descending) with mass >= p and >= min_keep entries, else -1."""
    sa = cuda.shared.array(TOP_K_MAX, np.float64)
    sb = cuda.shared.array(TOP_K_MAX, np.float64)
    best = cuda.shared.array(1, np.int32)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    m = stats[0]
    inv = 1.0 / float(stats[1]) if stats[1] > _ZERO else 0.0
    for i in range(tid, n, nt):
        sa[i] = float(_exp0(vals[i] - m)) * inv
    if tid == 0:
        best[0] = n
    cuda.syncthreads()
    src = sa
    dst = sb
    off = 1
    while off < n:  # inclusive prefix sums (Hillis-Steele)
        for i in range(tid, n, nt):
            c = src[i]
            if i >= off:
                c += src[i - off]
            dst[i] = c
        cuda.syncthreads()
        src, dst = dst, src
        off *= 2
    for i in range(tid, n, nt):
        if src[i] >= p and i + 1 >= min_keep:
            cuda.atomic.min(best, 0, np.int32(i))
    cuda.syncthreads()
    if tid == 0:
        cut[0] = best[0] + 1 if best[0] < n else -1


# ---------------------------------------------------------------- host entry points


def softmax(probs, logits, n: int, work: Work):
    """probs[:n] = softmax(logits[:n]) (device arrays); returns work.stats = (max, sum of exp(x - max)) on the device."""
    if n < 1:
        raise ValueError("softmax: n must be >= 1")
    grid, block = launch.stride_blocks(n, ROW_THREADS, ROW_THREADS)  # parts fit one merging pass of a block
    _softmax_parts[grid, block](work.parts, logits, n)
    _softmax_norm[grid, block](probs, work.stats, work.parts, logits, n, grid)
    return work.stats


def top_p(cut, vals, n: int, stats, p: float, min_keep: int) -> None:
    """cut[0] (device int32) = CPU top_p_cut over vals[:n] (descending candidates, n <= TOP_K_MAX)."""
    if not 1 <= n <= TOP_K_MAX:
        raise ValueError(f"top_p: n = {n} candidates; 1 to {TOP_K_MAX} fit the device kernel")
    grid, block = launch.one_block()
    _top_p[grid, block](cut, vals, stats, n, float(p), int(min_keep))


def top_p_host(vals, n: int, stats, p: float, min_keep: int, work: Work) -> int:
    """top_p into work.cut; returns the prefix length on the host (-1 if none)."""
    top_p(work.cut, vals, n, stats, p, min_keep)
    return int(work.cut.copy_to_host()[0])
