"""Causal GQA attention over a KV cache on the device: twin of kernels.attention (f32 caches)
and kernels.attention_kv (every cache type).

Layout (device arrays, C-contiguous):
  q, out       float32 (n_tokens, n_head, head_dim)
  k_cache      (n_kv_head, n_ctx, width)   one sequence's cache: row j holds position j, stored
  v_cache      (n_kv_head, n_ctx, width)   as its cache type (kernels.cuda.kv; float32 for f32)
  q_pos        int32 (n_tokens,)
  scratch      (n_tokens_max, n_head, n_ctx)  decode scores, owned by the caller: new_scratch()

Masking, GQA, soft-cap and scale are the CPU twin's: query t sees key j (0 <= j < kv_len) iff
j <= q_pos[t] and (window <= 0 or q_pos[t] - j < window); head h reads kv head
h // (n_head // n_kv_head); score = cap(q . k * scale); a query that sees no key gets zeros.

Keys and values are read element by element through kernels.cuda.kv.kv_at, which dequantizes
on the fly (types and the float16 views of quantized rows are keyword arguments: f32 when
left out). Two kernels, same results to float32 rounding:
- attention_decode: a block per (token, head). Scores go to global scratch, a block max and a
  block sum normalise them, then threads over head_dim (split into key groups when head_dim is
  smaller than the block) sum p @ V with coalesced V reads. Right for one or a few tokens.
- attention_prefill: a block per tile of queries sharing a kv head (consecutive (token, GQA
  head) pairs), K/V staged bk keys at a time in shared memory and reused by every query of the
  tile, flash-attention style online softmax (running max, rescaled sums), so nothing of size
  n_ctx is written. Right once many queries share each K/V load.
Masked scores hold a finite sentinel, never -inf: the kernels compile with fast math.
"""

import math

import numpy as np
from numba import cuda

from kernels._jit import cuda_device, cuda_kernel
from kernels import kv_types as kt
from kernels.cuda import launch
from kernels.cuda.kv import kv_at
from kernels.cuda.launch import ATTN_SMEM as _SMEM
from kernels.cuda.launch import MAX_HEAD_DIM, ROW_THREADS  # decode keeps q in shared memory
from kernels.cuda.reduce import block_max, block_sum


_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_NEG = np.float32(-1e30)  # a masked score: finite, because fast math assumes no infinities
_NEG_HALF = np.float32(-5e29)  # scores above this are real
_EXP_CUT = np.float32(-87.0)  # expf underflows below ~-104: call it 0 early, as the CPU does


@cuda_device
def _exp0(d):
    """exp(d) for d <= 0, and 0 below _EXP_CUT (so masked sentinels contribute nothing)."""
    return math.exp(d) if d > _EXP_CUT else _ZERO


@cuda_device
def _cap(s, softcap):
    """Gemma-2 soft-cap: softcap * tanh(s / softcap) when softcap > 0."""
    if softcap > _ZERO:
        return softcap * math.tanh(s / softcap)
    return s


@cuda_device
def _span(pos, kv_len, window):
    """Visible keys [lo, hi) of a query at position pos (one contiguous range, maybe empty)."""
    hi = max(min(pos + 1, kv_len), 0)
    lo = 0
    if window > 0:
        lo = min(max(0, pos - window + 1), hi)
    return lo, hi


@cuda_kernel
def attention_decode(out, q, k_all, v_all, k_half, v_half, tk, tv, seq, q_pos, kv_len, scale, window, softcap,
                     scratch):
    """out[t, h] (head_dim,) for block t * n_head + h over sequence seq[t]'s cache; scratch[t, h] holds its scores.

    k_all, v_all (n_seq, n_kv, n_ctx, width): every sequence's cache, so one launch serves
    a decode batch of many sequences; types tk, tv, with their float16 views k_half, v_half.
    """
    red = cuda.shared.array(ROW_THREADS, np.float32)
    qs = cuda.shared.array(MAX_HEAD_DIM, np.float32)  # the query, read by every thread
    n_head = q.shape[1]
    hd = q.shape[2]
    t = cuda.blockIdx.x // n_head
    h = cuda.blockIdx.x - t * n_head
    g = h // (n_head // k_all.shape[1])
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    lo, hi = _span(np.int64(q_pos[t]), kv_len, window)
    for d in range(tid, hd, nt):
        qs[d] = q[t, h, d]
    cuda.syncthreads()
    s_row = scratch[t, h]  # (n_ctx,)
    kh = k_all[seq[t], g]  # (n_ctx, width)
    vh = v_all[seq[t], g]
    khh = k_half[seq[t], g]
    vhh = v_half[seq[t], g]
    m = _NEG
    for j in range(lo + tid, hi, nt):  # a key per thread: dots over head_dim
        acc = _ZERO
        for d in range(hd):
            acc += qs[d] * kv_at(kh, khh, j, d, tk)
        s = _cap(acc * scale, softcap)
        s_row[j] = s
        m = max(m, s)
    m = block_max(red, m)
    tot = _ZERO
    for j in range(lo + tid, hi, nt):  # the same keys as above: each thread rereads its own writes
        e = _exp0(s_row[j] - m)
        s_row[j] = e
        tot += e
    tot = block_sum(red, tot)  # its barriers also publish the s_row writes to the whole block
    inv = _ONE / tot if tot > _ZERO else _ZERO  # tot >= 1 unless no key is visible
    ngrp = nt // hd
    if ngrp < 2:  # threads over head_dim: V rows read coalesced, p[j] broadcast
        for d in range(tid, hd, nt):
            acc = _ZERO
            for j in range(lo, hi):
                acc += s_row[j] * kv_at(vh, vhh, j, d, tv)
            out[t, h, d] = acc * inv
    else:  # head_dim < block: ngrp key groups per dim, then a sum over groups in shared memory
        d = tid % hd
        grp = tid // hd
        acc = _ZERO
        if grp < ngrp:
            for j in range(lo + grp, hi, ngrp):
                acc += s_row[j] * kv_at(vh, vhh, j, d, tv)
        red[tid] = acc
        cuda.syncthreads()
        if tid < hd:
            for gg in range(1, ngrp):
                acc += red[tid + gg * hd]
            out[t, h, d] = acc * inv


@cuda_kernel
def attention_prefill(out, q, k_cache, v_cache, k_half, v_half, tk, tv, q_pos, kv_len, scale, window, softcap, bq,
                      bk):
    """out for a tile of bq consecutive (token, GQA head) lanes of one kv head; K/V in bk-key tiles."""
    sm = cuda.shared.array(_SMEM, np.float32)
    n_tokens, n_head, hd = q.shape
    n_kv = k_cache.shape[0]
    n_rep = n_head // n_kv
    n_tiles = (n_tokens * n_rep + bq - 1) // bq  # per kv head
    g = cuda.blockIdx.x // n_tiles
    f0 = (cuda.blockIdx.x - g * n_tiles) * bq  # lane l is pair f = f0 + l: token f // n_rep
    nl = min(bq, n_tokens * n_rep - f0)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    ks = hd + 1  # padded K rows: a warp reading K[jj, d] over jj hits distinct banks
    QS = 0  # (bq, hd) queries
    OS = bq * hd  # (bq, hd) unnormalised outputs
    KS = 2 * bq * hd  # (bk, hd + 1)
    VS = KS + bk * ks  # (bk, hd)
    SS = VS + bk * hd  # (bq, bk) scores, then probabilities
    MS = SS + bq * bk  # (bq,) running max
    LS = MS + bq  # (bq,) running sum of exp(s - max)
    AS = LS + bq  # (bq,) this tile's rescale factor exp(old max - new max)
    for i in range(tid, nl * hd, nt):
        l = i // hd
        f = f0 + l
        tt = f // n_rep
        sm[QS + i] = q[tt, g * n_rep + f - tt * n_rep, i - l * hd]
        sm[OS + i] = _ZERO
    for l in range(tid, nl, nt):
        sm[MS + l] = _NEG
        sm[LS + l] = _ZERO
    # Keys any lane sees: every thread computes the same bounds, so the loop below is uniform.
    jlo = kv_len
    jhi = 0
    for l in range(nl):
        a, b = _span(np.int64(q_pos[(f0 + l) // n_rep]), kv_len, window)
        if a < b:
            jlo = min(jlo, a)
            jhi = max(jhi, b)
    cuda.syncthreads()
    for j0 in range(jlo, jhi, bk):
        nk = min(bk, jhi - j0)
        for i in range(tid, nk * hd, nt):  # stage K and V: consecutive threads, consecutive floats
            jj = i // hd
            d = i - jj * hd
            sm[KS + jj * ks + d] = kv_at(k_cache[g], k_half[g], j0 + jj, d, tk)
            sm[VS + i] = kv_at(v_cache[g], v_half[g], j0 + jj, d, tv)
        cuda.syncthreads()
        for i in range(tid, nl * nk, nt):  # scores of (lane, key) pairs
            l = i // nk
            jj = i - l * nk
            a, b = _span(np.int64(q_pos[(f0 + l) // n_rep]), kv_len, window)
            s = _NEG
            if j0 + jj >= a and j0 + jj < b:
                acc = _ZERO
                for d in range(hd):
                    acc += sm[QS + l * hd + d] * sm[KS + jj * ks + d]
                s = _cap(acc * scale, softcap)
            sm[SS + l * bk + jj] = s
        cuda.syncthreads()
        for l in range(tid, nl, nt):  # online softmax: a thread per lane over this key tile
            m_old = sm[MS + l]
            m = m_old
            for jj in range(nk):
                m = max(m, sm[SS + l * bk + jj])
            tot = _ZERO
            for jj in range(nk):
                s = sm[SS + l * bk + jj]
                p = _exp0(s - m) if s > _NEG_HALF else _ZERO
                sm[SS + l * bk + jj] = p
                tot += p
            alpha = _exp0(m_old - m)  # 0 on the first visible tile (m_old is the sentinel)
            sm[AS + l] = alpha
            sm[LS + l] = sm[LS + l] * alpha + tot
            sm[MS + l] = m
        cuda.syncthreads()
        for i in range(tid, nl * hd, nt):  # O = O * alpha + P @ V, a thread per (lane, dim)
            l = i // hd
            d = i - l * hd
            acc = sm[OS + i] * sm[AS + l]
            for jj in range(nk):
                acc += sm[SS + l * bk + jj] * sm[VS + jj * hd + d]
            sm[OS + i] = acc
        cuda.syncthreads()  # before the next tile overwrites K, V and the scores
    for i in range(tid, nl * hd, nt):
        l = i // hd
        f = f0 + l
        tt = f // n_rep
        tot = sm[LS + l]
        out[tt, g * n_rep + f - tt * n_rep, i - l * hd] = sm[OS + i] / tot if tot > _ZERO else _ZERO


def new_scratch(max_tokens: int, n_head: int, n_ctx: int):
    """Decode scores scratch for attention(): a device float32 (max_tokens, n_head, n_ctx)."""
    return cuda.device_array((max_tokens, n_head, n_ctx), np.float32)


def attention(out, q, k_cache, v_cache, q_pos, kv_len, scale, window, softcap, scratch, prefill=None,
              types=(kt.F32, kt.F32), halves=(None, None)) -> None:
    """out (n_tokens, n_head, head_dim) = causal GQA attention of q over the cache's first kv_len keys.

    Device arrays, the CPU twin's arguments. prefill=None picks the kernel by n_tokens
    (launch.ATTN_PREFILL_MIN_TOKENS); True/False forces one (tests run both on the same inputs).
    scratch is read only by the decode kernel. types: the caches' types (kernels.kv_types);
    halves: float16 views of quantized caches (kernels.cuda.kv), None for the others.
    """
    n_tokens, n_head, hd = q.shape
    kind = _kinds(k_cache, v_cache, types, halves)
    n_kv, n_ctx = k_cache.shape[0], k_cache.shape[1]
    if n_head % n_kv != 0 or kv_len > n_ctx or hd > MAX_HEAD_DIM:
        raise ValueError("attention: n_head % n_kv_head != 0, kv_len > n_ctx, or head_dim > 256")
    if n_tokens == 0:
        return
    if prefill is None:
        prefill = n_tokens >= launch.ATTN_PREFILL_MIN_TOKENS
    args = (int(kv_len), np.float32(scale), int(window), np.float32(softcap))
    if prefill:
        bq, bk = launch.prefill_tiles(hd)
        n_tiles = (n_tokens * (n_head // n_kv) + bq - 1) // bq
        grid, block = launch.rows(n_kv * n_tiles)
        attention_prefill[grid, block](out, q, k_cache, v_cache, *kind, q_pos, *args, bq, bk)
    else:
        one = lambda a: a.reshape(1, *tuple(a.shape))  # noqa: E731 (this sequence's cache as a batch of one)
        kind = (one(kind[0]), one(kind[1]), kind[2], kind[3])
        _decode(out, q, one(k_cache), one(v_cache), kind, _no_seq(n_tokens), q_pos, args, scratch)


def attention_batch(out, q, k_all, v_all, seq, q_pos, scale, window, softcap, scratch, types=(kt.F32, kt.F32),
                    halves=(None, None)) -> None:
    """Decode attention for tokens of different sequences in one launch: token t attends over
    k_all[seq[t]] (n_seq, n_kv, n_ctx, width) up to its own position q_pos[t] (its key
    already stored). Device arrays; seq, q_pos int32 (n_tokens,); types, halves as attention's."""
    n_tokens, n_head, hd = q.shape
    if n_head % k_all.shape[1] != 0 or hd > MAX_HEAD_DIM:
        raise ValueError("attention_batch: n_head % n_kv_head != 0, or head_dim > MAX_HEAD_DIM")
    if n_tokens:
        args = (int(k_all.shape[2]), np.float32(scale), int(window), np.float32(softcap))
        _decode(out, q, k_all, v_all, _kinds(k_all, v_all, types, halves), seq, q_pos, args, scratch)


def _kinds(k_cache, v_cache, types, halves) -> tuple:
    """(k_half, v_half, tk, tv) kernel arguments: a cache stands in for its own absent view."""
    return (k_cache if halves[0] is None else halves[0], v_cache if halves[1] is None else halves[1],
            int(types[0]), int(types[1]))


def _decode(out, q, k_all, v_all, kind, seq, q_pos, args, scratch) -> None:
    n_tokens, n_head = q.shape[0], q.shape[1]
    if scratch.shape[0] < n_tokens or scratch.shape[1] < n_head or scratch.shape[2] < args[0]:
        raise ValueError("attention: scratch smaller than (n_tokens, n_head, kv_len)")
    grid, block = launch.rows(n_tokens * n_head)
    attention_decode[grid, block](out, q, k_all, v_all, *kind, seq, q_pos, *args, scratch)


_SEQ0 = [None]  # device int32 zeros: the sequence index of every token of a one-sequence call


def _no_seq(n: int):
    if _SEQ0[0] is None or _SEQ0[0].shape[0] < n:
        _SEQ0[0] = cuda.to_device(np.zeros(max(n, 64), np.int32))
    return _SEQ0[0][:n]
