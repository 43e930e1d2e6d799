"""Causal attention over a float32 KV cache, with grouped-query heads, a sliding window and
an optional logit soft-cap.

Layout (all float32 and C-contiguous unless said):
  q, out    (n_tokens, n_head, head_dim)      this step's queries and results
  k_cache   (n_kv_head, n_ctx, head_dim)      slot j of a head holds the key at position j
  v_cache   (n_kv_head, n_ctx, head_dim)
  q_pos     int32 (n_tokens,)                 each query's absolute position
  scratch   (n_lanes, >= scratch_cols(n_ctx, head_dim)), owned by the caller: new_scratch()

Query t sees key j (0 <= j < kv_len) iff j <= q_pos[t] and (window <= 0 or q_pos[t] - j <
window) (llama.cpp masks pos_q - pos_k >= n_swa), one contiguous range. Head h reads kv head
h // (n_head // n_kv_head). score = (q . k) * scale; if softcap > 0, score = softcap *
tanh(score / softcap) (HF/Gemma2 order; llama.cpp caps before its kq_scale, the same when
Q is pre-scaled and scale = 1). Softmax over the visible keys, then @ v. A query that sees
no key gets zeros. sinks (n_head,) float32, or empty for none: head h's softmax denominator
also counts exp(sinks[h]), a key that is never there (gpt-oss's attention sinks, as ggml adds
them: the max taken over the scores and the sink).

Two paths, same results to float32 rounding:
- per (token, head): dots over head_dim, for decode, for the last query of every call (see
  attention()) and when few queries share a kv head;
- tiles of up to 16 queries sharing a kv head (tokens x GQA heads), for prefill: 16-lane
  vectors across queries (kernels.simd), so each key element loaded feeds 16 FMAs and no
  horizontal sums are needed; 2-3x faster per (query, key) pair. Needs head_dim % 64 == 0
  and C-contiguous caches.
Work items are dealt round-robin to the scratch's lanes; prange runs over lanes, each owning
its outputs and its scratch row. Round-robin keeps causal prefill balanced (early tokens see
few keys, late ones many), so n_lanes = numba.get_num_threads() is enough.
"""

import numba
import numpy as np
from numba import prange

from ._jit import kernel, parallel_kernel
from .activation import exp_shifted, row_max
from .fastexp import fast_tanh
from .simd import fma_bcast, load_f32x16, store_f32x16, zeros_f32

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_NEG = np.float32(-1e30)  # a masked score: finite, because fastmath assumes no infinities
_LANES = 16  # queries per tile: one float32 vector of 512 bits


def scratch_cols(n_ctx, head_dim):
    """Scratch columns per lane: a tile's scores (16 per key), its q and out, 176 more, and two
    buffers of 16 dequantized rows at the end (kernels.attention_kv)."""
    return _LANES * (n_ctx + 4 * head_dim + 11)


def new_scratch(n_ctx, head_dim, n_lanes=0):
    """Scratch for attention(): (n_lanes or numba.get_num_threads(), scratch_cols) float32."""
    return np.empty((n_lanes if n_lanes > 0 else numba.get_num_threads(), scratch_cols(n_ctx, head_dim)),
                    np.float32)


# ---------------------------------------------------------------- one (token, head) at a time

@kernel
def _scores(s, qv, kh, scale):
    """s (n,) = (qv . kh[j]) * scale for kh (n, head_dim); 4 keys per pass share the q loads."""
    n = kh.shape[0]
    dim = qv.shape[0]
    j = 0
    while j + 4 <= n:
        k0, k1, k2, k3 = kh[j], kh[j + 1], kh[j + 2], kh[j + 3]
        a0 = a1 = a2 = a3 = _ZERO
        for d in range(dim):  # four vectorized reductions over head_dim
            qd = qv[d]
            a0 += qd * k0[d]
            a1 += qd * k1[d]
            a2 += qd * k2[d]
            a3 += qd * k3[d]
        s[j], s[j + 1], s[j + 2], s[j + 3] = a0 * scale, a1 * scale, a2 * scale, a3 * scale
        j += 4
    while j < n:
        kj = kh[j]
        a0 = _ZERO
        for d in range(dim):
            a0 += qv[d] * kj[d]
        s[j] = a0 * scale
        j += 1


@kernel
def _weighted_add(o, p, vh):
    """o (head_dim,) += sum_j p[j] * vh[j] for vh (n, head_dim); 8 keys per pass over o."""
    n = vh.shape[0]
    dim = o.shape[0]
    j = 0
    # Eight keys per load/store of o: an axpy per key would be bound by the o round trip.
    while j + 8 <= n:
        p0, p1, p2, p3 = p[j], p[j + 1], p[j + 2], p[j + 3]
        p4, p5, p6, p7 = p[j + 4], p[j + 5], p[j + 6], p[j + 7]
        v0, v1, v2, v3 = vh[j], vh[j + 1], vh[j + 2], vh[j + 3]
        v4, v5, v6, v7 = vh[j + 4], vh[j + 5], vh[j + 6], vh[j + 7]
        for d in range(dim):
            o[d] += ((p0 * v0[d] + p1 * v1[d]) + (p2 * v2[d] + p3 * v3[d])) + (
                (p4 * v4[d] + p5 * v5[d]) + (p6 * v6[d] + p7 * v7[d]))
        j += 8
    while j < n:
        pj = p[j]
        vj = vh[j]
        for d in range(dim):
            o[d] += pj * vj[d]
        j += 1


@kernel
def sink_of(sinks, h):
    """Head h's sink logit; _NEG (adds nothing) when sinks is empty."""
    return sinks[h] if sinks.shape[0] > 0 else _NEG


@kernel
def _softmax_span(p, a, b, softcap, sink):
    """p (n,) = exp(cap(p) - max) over [a, b), 0 elsewhere; returns the sum (0 if a >= b), plus
    exp(sink - max) when sink > _NEG (max then covers the sink too)."""
    for j in range(a):
        p[j] = _ZERO
    for j in range(b, p.shape[0]):
        p[j] = _ZERO
    if a >= b:
        return _ZERO
    x = p[a:b]
    n = b - a
    if softcap > 0:  # Gemma2-style: softcap * tanh(score / softcap)
        inv_cap = np.float32(1.0 / softcap)
        cap = np.float32(softcap)
        for j in range(n):
            x[j] = cap * fast_tanh(x[j] * inv_cap)
    m = row_max(x)
    if sink > _NEG:
        m = max(m, sink)
        return exp_shifted(x, m) + np.float32(np.exp(sink - m))
    return exp_shifted(x, m)


@kernel
def attend_one(o, qv, kh, vh, scale, softcap, sink, s):
    """o (head_dim,) = softmax_j(cap(qv . kh[j] * scale)) @ vh; kh, vh (n, head_dim); s (>= n,) scratch;
    sink: the head's sink logit (_NEG: none)."""
    n = kh.shape[0]
    if n == 0:
        for d in range(o.shape[0]):
            o[d] = _ZERO
        return
    # Callers pass slices, so every loop here counts from 0: with range(lo, hi) Numba must
    # fix up possibly negative indices, which turns vector loads into gathers.
    _scores(s, qv, kh, np.float32(scale))
    p = s[:n]
    total = _softmax_span(p, 0, n, softcap, sink)
    for d in range(o.shape[0]):
        o[d] = _ZERO
    _weighted_add(o, p, vh)
    inv = _ONE / total  # total >= 1: the max score contributes exp(0)
    for d in range(o.shape[0]):
        o[d] *= inv


# ---------------------------------------------------------------- tiles of 16 queries


@kernel
def _tile_scores(S, T, qt, kh, n, ld, j0, dim, n_used):
    """S[l ld + j0 + j] = sum_d qt[16 d + l] kh[j, d] for j < n, l < n_used; kh C-contiguous; T (128,) scratch."""
    j = 0
    while j < n:
        a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
        a4, a5, a6, a7 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
        nb = min(8, n - j)
        if nb == 8:  # 8 keys per pass: 8 independent FMA chains hide the FMA latency
            b = j * dim
            for d in range(dim):
                w = load_f32x16(qt, d * _LANES)  # element d of the 16 queries
                a0 = fma_bcast(a0, w, kh, b + d)
                a1 = fma_bcast(a1, w, kh, b + dim + d)
                a2 = fma_bcast(a2, w, kh, b + 2 * dim + d)
                a3 = fma_bcast(a3, w, kh, b + 3 * dim + d)
                a4 = fma_bcast(a4, w, kh, b + 4 * dim + d)
                a5 = fma_bcast(a5, w, kh, b + 5 * dim + d)
                a6 = fma_bcast(a6, w, kh, b + 6 * dim + d)
                a7 = fma_bcast(a7, w, kh, b + 7 * dim + d)
            store_f32x16(T, 16, a1, 16)
            store_f32x16(T, 32, a2, 16)
            store_f32x16(T, 48, a3, 16)
            store_f32x16(T, 64, a4, 16)
            store_f32x16(T, 80, a5, 16)
            store_f32x16(T, 96, a6, 16)
            store_f32x16(T, 112, a7, 16)
        else:
            for d in range(dim):
                a0 = fma_bcast(a0, load_f32x16(qt, d * _LANES), kh, j * dim + d)
            nb = 1
        store_f32x16(T, 0, a0, 16)
        # Transpose to lane-major, so that the softmax runs along contiguous rows.
        for l in range(n_used):
            row = S[l * ld + j0 + j:l * ld + j0 + j + nb]
            for i in range(nb):
                row[i] = T[i * 16 + l]
        j += nb


@kernel
def _tile_pv(O, S, vh, n, ld, j0, dim, n_used, add):
    """O[l dim + d] (+)= sum_j S[l ld + j0 + j] * vh[j, d], j < n, for lanes l < n_used (rounded up to 4);
    dim % 64 == 0; add: accumulate onto O rather than overwrite it."""
    for r in range(0, n_used, 4):  # 4 lanes x 64 dims = 16 vector accumulators per pass
        p0 = r * ld + j0
        p1 = p0 + ld
        p2 = p1 + ld
        p3 = p2 + ld
        for c in range(0, dim, 64):
            o = r * dim + c
            if add:
                a00, a01 = load_f32x16(O, o), load_f32x16(O, o + 16)
                a02, a03 = load_f32x16(O, o + 32), load_f32x16(O, o + 48)
                a10, a11 = load_f32x16(O, o + dim), load_f32x16(O, o + dim + 16)
                a12, a13 = load_f32x16(O, o + dim + 32), load_f32x16(O, o + dim + 48)
                a20, a21 = load_f32x16(O, o + 2 * dim), load_f32x16(O, o + 2 * dim + 16)
                a22, a23 = load_f32x16(O, o + 2 * dim + 32), load_f32x16(O, o + 2 * dim + 48)
                a30, a31 = load_f32x16(O, o + 3 * dim), load_f32x16(O, o + 3 * dim + 16)
                a32, a33 = load_f32x16(O, o + 3 * dim + 32), load_f32x16(O, o + 3 * dim + 48)
            else:
                a00, a01, a02, a03 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
                a10, a11, a12, a13 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
                a20, a21, a22, a23 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
                a30, a31, a32, a33 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
            for j in range(n):
                vb = j * dim + c
                v0, v1 = load_f32x16(vh, vb), load_f32x16(vh, vb + 16)
                v2, v3 = load_f32x16(vh, vb + 32), load_f32x16(vh, vb + 48)
                # Lane r + i's probability of key j, broadcast.
                a00, a01 = fma_bcast(a00, v0, S, p0 + j), fma_bcast(a01, v1, S, p0 + j)
                a02, a03 = fma_bcast(a02, v2, S, p0 + j), fma_bcast(a03, v3, S, p0 + j)
                a10, a11 = fma_bcast(a10, v0, S, p1 + j), fma_bcast(a11, v1, S, p1 + j)
                a12, a13 = fma_bcast(a12, v2, S, p1 + j), fma_bcast(a13, v3, S, p1 + j)
                a20, a21 = fma_bcast(a20, v0, S, p2 + j), fma_bcast(a21, v1, S, p2 + j)
                a22, a23 = fma_bcast(a22, v2, S, p2 + j), fma_bcast(a23, v3, S, p2 + j)
                a30, a31 = fma_bcast(a30, v0, S, p3 + j), fma_bcast(a31, v1, S, p3 + j)
                a32, a33 = fma_bcast(a32, v2, S, p3 + j), fma_bcast(a33, v3, S, p3 + j)
            store_f32x16(O, o, a00, 16)
            store_f32x16(O, o + 16, a01, 16)
            store_f32x16(O, o + 32, a02, 16)
            store_f32x16(O, o + 48, a03, 16)
            store_f32x16(O, o + dim, a10, 16)
            store_f32x16(O, o + dim + 16, a11, 16)
            store_f32x16(O, o + dim + 32, a12, 16)
            store_f32x16(O, o + dim + 48, a13, 16)
            store_f32x16(O, o + 2 * dim, a20, 16)
            store_f32x16(O, o + 2 * dim + 16, a21, 16)
            store_f32x16(O, o + 2 * dim + 32, a22, 16)
            store_f32x16(O, o + 2 * dim + 48, a23, 16)
            store_f32x16(O, o + 3 * dim, a30, 16)
            store_f32x16(O, o + 3 * dim + 16, a31, 16)
            store_f32x16(O, o + 3 * dim + 32, a32, 16)
            store_f32x16(O, o + 3 * dim + 48, a33, 16)


@kernel
def attend_tile(out, q, kh, vh, q_pos, t0, nt, g, n_rep, kv_len, scale, window, softcap, sinks, buf):
    """out[t0 + tt, g n_rep + rr], tt < nt, rr < n_rep (lane tt n_rep + rr; nt n_rep <= 16); kh, vh (n_ctx, dim)."""
    dim = q.shape[2]
    n_used = nt * n_rep
    n_pad = (n_used + 3) // 4 * 4  # _tile_pv works on groups of 4 lanes
    span = buf[0:32]  # per lane: visible keys [lo, hi) as float32 (exact below 2^24)
    T = buf[32:160]  # (8, 16): 8 keys' scores before the transpose
    tot = buf[160:176]
    qt = buf[176:176 + 16 * dim]  # (dim, 16): q transposed, times scale
    O = buf[176 + 16 * dim:176 + 32 * dim]  # (16, dim)
    S = buf[176 + 32 * dim:]  # (16, n): scores, then probabilities, lane-major
    jlo = kv_len
    jhi = 0
    for l in range(n_used):
        t = t0 + l // n_rep
        pos = np.int64(q_pos[t])
        b = max(min(pos + 1, kv_len), 0)
        a = min(max(0, pos - window + 1), b) if window > 0 else 0
        span[2 * l] = a
        span[2 * l + 1] = b
        if a < b:
            jlo = min(jlo, a)
            jhi = max(jhi, b)
        qv = q[t, g * n_rep + l % n_rep]
        for d in range(dim):
            qt[d * 16 + l] = qv[d] * scale
    for l in range(n_used, 16):
        for d in range(dim):
            qt[d * 16 + l] = _ZERO
    if jhi <= jlo:  # no lane sees a key
        for l in range(n_used):
            out[t0 + l // n_rep, g * n_rep + l % n_rep, :] = _ZERO
        return
    n = jhi - jlo
    _tile_scores(S, T, qt, kh[jlo:jhi], n, n, 0, dim, n_used)
    for l in range(n_used):  # a lane that sees nothing may lie outside [jlo, jhi): clamp
        a = min(max(np.int64(span[2 * l]) - jlo, 0), n)
        b = min(max(np.int64(span[2 * l + 1]) - jlo, 0), n)
        tot[l] = _softmax_span(S[l * n:(l + 1) * n], a, b, softcap, sink_of(sinks, g * n_rep + l % n_rep))
    S[n_used * n:n_pad * n] = _ZERO
    _tile_pv(O, S, vh[jlo:jhi], n, n, 0, dim, n_used, False)
    for l in range(n_used):
        inv = _ONE / tot[l] if tot[l] > 0 else _ZERO
        ol = out[t0 + l // n_rep, g * n_rep + l % n_rep]
        for d in range(dim):
            ol[d] = O[l * dim + d] * inv


# ---------------------------------------------------------------- the entry point


@parallel_kernel
def attention(out, q, k_cache, v_cache, q_pos, kv_len, scale, window, softcap, sinks, scratch):
    """out (n_tokens, n_head, head_dim) = causal GQA attention of q over the cache's first kv_len keys."""
    n_tokens, n_head, dim = q.shape
    n_kv = k_cache.shape[0]
    n_rep = n_head // n_kv  # query heads per kv head
    n_lanes = scratch.shape[0]
    if n_head % n_kv != 0 or kv_len > k_cache.shape[1] or scratch.shape[1] < kv_len:
        raise ValueError("attention: n_head % n_kv_head != 0, kv_len > n_ctx, or scratch too small")
    tb = _LANES // n_rep  # tokens per tile
    contiguous = (k_cache.strides[2] == 4 and k_cache.strides[1] == 4 * dim
                  and v_cache.strides[2] == 4 and v_cache.strides[1] == 4 * dim)
    # The last query always goes through the per (token, head) path, the one a lone decode
    # token takes: a prompt read from the cache but for its last token then gets the same bits
    # as the whole prompt evaluated at once (a tile lane's arithmetic does not depend on the
    # other lanes, so the earlier rows match too). Tiles pay for 16 lanes: worth it once 8 or
    # more of the other queries share a kv head.
    n_tiled = n_tokens - 1
    if not (tb > 0 and n_rep * min(n_tiled, tb) >= 8 and dim % 64 == 0 and contiguous
            and scratch.shape[1] >= _LANES * (kv_len + 2 * dim + 11)):
        n_tiled = 0
    n_tile_items = ((n_tiled + tb - 1) // tb) * n_kv if n_tiled > 0 else 0
    n_items = n_tile_items + (n_tokens - n_tiled) * n_head
    for lane in prange(n_lanes):
        buf = scratch[lane]
        for item in range(lane, n_items, n_lanes):
            if item < n_tile_items:
                tile = item // n_kv
                g = item - tile * n_kv
                t0 = tile * tb
                attend_tile(out, q, k_cache[g], v_cache[g], q_pos, t0, min(tb, n_tiled - t0), g, n_rep,
                            kv_len, scale, window, softcap, sinks, buf)
                continue
            i = item - n_tile_items
            t = n_tiled + i // n_head
            h = i - (t - n_tiled) * n_head
            g = h // n_rep
            pos = np.int64(q_pos[t])
            hi = max(min(pos + 1, kv_len), 0)
            lo = 0
            if window > 0:
                lo = min(max(0, pos - window + 1), hi)
            attend_one(out[t, h], q[t, h], k_cache[g, lo:hi], v_cache[g, lo:hi], scale, softcap, sink_of(sinks, h),
                       buf)
