"""One transformer layer as one jitted call.

Why: a decode step of SmolLM2 runs 30 layers of ~15 kernels each; dispatching each from
Python cost about 2 ms of a 5.7 ms step (measured with cProfile). Inside one jitted
function the kernels call each other directly.

Matrices travel as tuples (qs, d, m, w, n, k, width, bs, is_float, sym) (see `mat_args`);
fused Q/K/V and gate/up matrices come as 3- and 2-tuples of such, padded with empty
matrices (n = 0) when the file's types kept them apart. Optional vectors (biases, Q/K
norms, post-norms) are empty arrays when the architecture has none.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import kernel
from kernels.activation import geglu, swiglu
from kernels.attention import attention
from kernels.matmul import PackedMatrix
from kernels.norm import rms_norm
from kernels.qmatmul import fmatmul, qmatmul, quantize_activations, quantize_activations_parallel
from kernels.rope import rope_apply

_NO_U8 = np.zeros(0, np.uint8)
_NO_U16 = np.zeros(0, np.uint16)
_NO_F32 = np.zeros(0, np.float32)


def mat_args(m: PackedMatrix | None, k: int = 0) -> tuple:
    """A PackedMatrix as the tuple the jitted layer takes; None gives an empty matrix."""
    if m is None:
        return (_NO_U8, _NO_U16, _NO_U16, _NO_F32, 0, k, 8, 32, False, 0.0)
    w = m.w if m.is_float else _NO_F32
    return (m.qs, m.d, m.m, w, m.n, m.k, m.width, max(m.bs, 16), m.is_float, float(m.sym))


@kernel
def _quantize(a, x):
    """a = (xq, dx, sx, wide) <- x (T, k): int8 activations for every quantized matrix reading x."""
    if x.shape[0] >= 8:
        quantize_activations_parallel(a[0][: x.shape[0]], a[1][: x.shape[0]], a[2][: x.shape[0]], x)
    else:
        quantize_activations(a[0][: x.shape[0]], a[1][: x.shape[0]], a[2][: x.shape[0]], x)


@kernel
def _mm(out, a, x, m):
    """out (T, n) <- x @ W.T for one matrix tuple m; a holds x's int8 form."""
    n_tok = x.shape[0]
    if m[4] == 0:
        return
    if m[8]:
        fmatmul(out, x, m[3], m[4], m[5])
    else:
        qmatmul(out, a[0][:n_tok], a[1][:n_tok], a[2][:n_tok], a[3], m[0], m[1], m[2], m[4], m[5], m[6], m[7], m[9])


@kernel
def layer(x, h, qkv, q, k, att, gu, ff, act_e, act_q, act_f, cos, sin, pos, segs, kc, vc, scratch,
          attn_norm, wqkv, bqkv, q_norm, k_norm, wo, post_attn_norm, ffn_norm, wgu, wdown, post_ffn_norm,
          eps, rope_dims, neox, attn_scale, window, softcap, gelu):
    """x (T, n_embd) += attention(x) then += ffn(x), for one layer; the KV cache gets the batch's keys.

    segs int64 (n_seg, 3): (sequence, first token, end token) of each sequence's run.
    """
    n = x.shape[0]
    n_head, hd = q.shape[1], q.shape[2]
    n_kv = k.shape[1]
    nq, nkv = n_head * hd, n_kv * hd
    # attention block
    rms_norm(h, x, attn_norm, eps)
    _quantize(act_e, h)
    n0, n1 = wqkv[0][4], wqkv[1][4]
    _mm(qkv[:, :n0], act_e, h, wqkv[0])
    _mm(qkv[:, n0 : n0 + n1], act_e, h, wqkv[1])
    _mm(qkv[:, n0 + n1 :], act_e, h, wqkv[2])
    if bqkv.shape[0] > 0:
        for t in range(n):
            qkv[t] += bqkv
    for t in range(n):
        q[t].reshape(nq)[:] = qkv[t, :nq]
        k[t].reshape(nkv)[:] = qkv[t, nq : nq + nkv]
    if q_norm.shape[0] > 0:
        q2, k2 = q.reshape(n * n_head, hd), k.reshape(n * n_kv, hd)
        rms_norm(q2, q2, q_norm, eps)
        rms_norm(k2, k2, k_norm, eps)
    rope_apply(q, cos, sin, rope_dims, neox)
    rope_apply(k, cos, sin, rope_dims, neox)
    for s in range(segs.shape[0]):
        seq, s0, s1 = segs[s, 0], segs[s, 1], segs[s, 2]
        p0 = np.int64(pos[s0])
        for t in range(s0, s1):
            p = p0 + t - s0
            for g in range(n_kv):
                kc[seq, g, p] = k[t, g]
                vc[seq, g, p] = qkv[t, nq + nkv + g * hd : nq + nkv + (g + 1) * hd]
        attention(att[s0:s1], q[s0:s1], kc[seq], vc[seq], pos[s0:s1], p0 + s1 - s0, attn_scale, window,
                  softcap, scratch)
    a2 = att.reshape(n, nq)
    _quantize(act_q, a2)
    _mm(h, act_q, a2, wo)
    if post_attn_norm.shape[0] > 0:
        rms_norm(h, h, post_attn_norm, eps)
    x += h
    # feed-forward block
    rms_norm(h, x, ffn_norm, eps)
    _quantize(act_e, h)
    n_ff = ff.shape[1]
    g0 = wgu[0][4]
    _mm(gu[:, :g0], act_e, h, wgu[0])
    _mm(gu[:, g0:], act_e, h, wgu[1])
    if gelu:
        geglu(ff, gu[:, :n_ff], gu[:, n_ff:])
    else:
        swiglu(ff, gu[:, :n_ff], gu[:, n_ff:])
    _quantize(act_f, ff)
    _mm(h, act_f, ff, wdown)
    if post_ffn_norm.shape[0] > 0:
        rms_norm(h, h, post_ffn_norm, eps)
    x += h
