"""Causal attention over a KV cache of any cache type (kernels.kv_types): kernels.attention's
two paths, reading keys and values CHUNK rows at a time through kernels.kv_dequant.

  out, q       float32 (n_tokens, n_head, head_dim)
  kc, vc       one sequence's caches as (type, f, h, b) tuples (kernels.kv_dequant), each array
               (n_kv_head, n_ctx, width)
  q_pos, kv_len, scale, window, softcap, sinks, scratch: as kernels.attention.attention

Masking, GQA, soft-cap, scale and the empty-query rule are kernels.attention's. When both
caches are f32 this is kernels.attention.attention itself (same bits). Otherwise:
- per (token, kv head): the scores of its n_rep query heads, a chunk of keys at a time
  (dequantized once into the lane's key buffer for all of them), one softmax per head over the
  whole span, then the weighted sums, a chunk of values at a time; each head's arithmetic is
  what a lone head would do, so decode and a prompt's last query agree bit for bit;
- tiles of up to 16 queries sharing a kv head: the same 16-lane kernels, fed a dequantized
  chunk of keys (then of values) at a time, so each dequantized element feeds up to 16 queries.
The lane's two row buffers are the last 2 x 16 x head_dim columns of its scratch row
(kernels.attention.scratch_cols counts them).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels import kv_types as kt
from kernels._jit import kernel, parallel_kernel
from kernels.attention import (_LANES, _scores, _softmax_span, _tile_pv, _tile_scores, _weighted_add, attention,
                               sink_of)
from kernels.kv_dequant import CHUNK, kv_rows

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


@kernel
def attend_group_kv(out, q, t, g, n_rep, kc, vc, lo, hi, scale, softcap, sinks, buf):
    """out[t, h] for the n_rep query heads h of kv head g over keys [lo, hi): each chunk of keys
    and of values is dequantized once for all of them; buf: the lane's scratch row."""
    dim = q.shape[2]
    h0 = g * n_rep
    for r in range(n_rep):
        for d in range(dim):
            out[t, h0 + r, d] = _ZERO
    n = hi - lo
    if n <= 0:
        return
    cols = buf.shape[0]
    kbuf = buf[cols - 2 * CHUNK * dim : cols - CHUNK * dim]
    vbuf = buf[cols - CHUNK * dim :]
    tot = buf[n_rep * n : n_rep * n + n_rep]
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        kr = kv_rows(kbuf, kc, g, lo + c0, lo + c1, dim)
        for r in range(n_rep):
            _scores(buf[r * n + c0 : r * n + c1], q[t, h0 + r], kr, np.float32(scale))
    for r in range(n_rep):
        tot[r] = _softmax_span(buf[r * n : (r + 1) * n], 0, n, softcap, sink_of(sinks, h0 + r))
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        vr = kv_rows(vbuf, vc, g, lo + c0, lo + c1, dim)
        for r in range(n_rep):
            _weighted_add(out[t, h0 + r], buf[r * n + c0 : r * n + c1], vr)
    for r in range(n_rep):
        inv = _ONE / tot[r]  # >= 1: the max score contributes exp(0)
        for d in range(dim):
            out[t, h0 + r, d] *= inv


@kernel
def attend_tile_kv(out, q, kc, vc, q_pos, t0, nt, g, n_rep, kv_len, scale, window, softcap, sinks, buf):
    """kernels.attention.attend_tile over typed caches: lanes (t0 + tt, g n_rep + rr), nt n_rep <= 16."""
    dim = q.shape[2]
    n_used = nt * n_rep
    n_pad = (n_used + 3) // 4 * 4
    cols = buf.shape[0]
    span = buf[0:32]
    T = buf[32:160]
    tot = buf[160:176]
    qt = buf[176 : 176 + 16 * dim]
    O = buf[176 + 16 * dim : 176 + 32 * dim]
    S = buf[176 + 32 * dim : cols - 2 * CHUNK * dim]
    kbuf = buf[cols - 2 * CHUNK * dim : cols - CHUNK * dim]
    vbuf = buf[cols - CHUNK * dim :]
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
    if jhi <= jlo:
        for l in range(n_used):
            out[t0 + l // n_rep, g * n_rep + l % n_rep, :] = _ZERO
        return
    n = jhi - jlo
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        _tile_scores(S, T, qt, kv_rows(kbuf, kc, g, jlo + c0, jlo + c1, dim), c1 - c0, n, c0, dim, n_used)
    for l in range(n_used):
        a = min(max(np.int64(span[2 * l]) - jlo, 0), n)
        b = min(max(np.int64(span[2 * l + 1]) - jlo, 0), n)
        tot[l] = _softmax_span(S[l * n : (l + 1) * n], a, b, softcap, sink_of(sinks, g * n_rep + l % n_rep))
    S[n_used * n : n_pad * n] = _ZERO
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        _tile_pv(O, S, kv_rows(vbuf, vc, g, jlo + c0, jlo + c1, dim), c1 - c0, n, c0, dim, n_used, c0 > 0)
    for l in range(n_used):
        inv = _ONE / tot[l] if tot[l] > 0 else _ZERO
        ol = out[t0 + l // n_rep, g * n_rep + l % n_rep]
        for d in range(dim):
            ol[d] = O[l * dim + d] * inv


@parallel_kernel
def _attention_typed(out, q, kc, vc, q_pos, kv_len, scale, window, softcap, sinks, scratch):
    n_tokens, n_head, dim = q.shape
    n_kv = kc[1].shape[0] if kc[0] == kt.F32 else kc[2].shape[0] if kc[0] == kt.F16 or kc[0] == kt.BF16 else (
        kc[3].shape[0])
    n_rep = n_head // n_kv
    n_lanes = scratch.shape[0]
    cols = scratch.shape[1]
    if n_head % n_kv != 0 or n_rep > _LANES or cols < n_rep * (kv_len + 1) + 2 * CHUNK * dim:
        raise ValueError("attention: n_head % n_kv_head != 0, or scratch too small")
    tb = _LANES // n_rep
    n_tiled = n_tokens - 1  # the last query takes the per (token, head) path: see kernels.attention
    if not (tb > 0 and n_rep * min(n_tiled, tb) >= 8 and dim % 64 == 0 and cols >= _LANES * (kv_len + 4 * dim + 11)):
        n_tiled = 0
    n_tile_items = ((n_tiled + tb - 1) // tb) * n_kv if n_tiled > 0 else 0
    n_items = n_tile_items + (n_tokens - n_tiled) * n_kv
    for lane in prange(n_lanes):
        buf = scratch[lane]
        for item in range(lane, n_items, n_lanes):
            if item < n_tile_items:
                tile = item // n_kv
                g = item - tile * n_kv
                t0 = tile * tb
                attend_tile_kv(out, q, kc, vc, q_pos, t0, min(tb, n_tiled - t0), g, n_rep, kv_len, scale, window,
                               softcap, sinks, buf)
                continue
            i = item - n_tile_items
            t = n_tiled + i // n_kv
            g = i - (t - n_tiled) * n_kv
            pos = np.int64(q_pos[t])
            hi = max(min(pos + 1, kv_len), 0)
            lo = min(max(0, pos - window + 1), hi) if window > 0 else 0
            attend_group_kv(out, q, t, g, n_rep, kc, vc, lo, hi, scale, softcap, sinks, buf)


@kernel
def attention_kv(out, q, kc, vc, q_pos, kv_len, scale, window, softcap, sinks, scratch):
    """out (n_tokens, n_head, head_dim) = causal GQA attention of q over the first kv_len rows of kc, vc."""
    if kc[0] == kt.F32 and vc[0] == kt.F32:
        attention(out, q, kc[1], vc[1], q_pos, kv_len, scale, window, softcap, sinks, scratch)
    else:
        _attention_typed(out, q, kc, vc, q_pos, kv_len, scale, window, softcap, sinks, scratch)


@kernel
def seq_cache(c, s):
    """Sequence s of a whole-cache tuple (type, f, h, b) of (n_seq, n_kv, n_ctx, width) arrays."""
    return (c[0], c[1][s], c[2][s], c[3][s])
