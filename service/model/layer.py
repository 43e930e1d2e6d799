"""One transformer layer as one jitted call.

Why: a decode step of SmolLM2 runs 30 layers of ~15 kernels each; dispatching each from
Python cost about 2 ms of a 5.7 ms step (measured with cProfile). Inside one jitted
function the kernels call each other directly.

The jitted code reads named records (typing.NamedTuple, compiled to structs read by field name):
  MatRef        one packed matrix (kernels.packing.PackedMatrix, arrays and sizes only)
  QuantActs     int8 activations of one input width (kernels.matmul.Activations' arrays)
  LayerBuffers  the per-call work buffers, sliced to the batch's T tokens
  LayerWeights  one layer's weights, built once per model
  LayerConfig   the layer's scalars
They cross the jit boundary as plain tuples (kernels.records.plain; as_record inside), because
Numba's dispatcher is 3x slower on namedtuple arguments (see kernels/records.py).
Fused Q/K/V and gate/up matrices come as 3- and 2-tuples of MatRef, padded with empty
matrices (n = 0) when the file's types kept them apart. Optional vectors (biases, Q/K norms,
post-norms) are empty arrays when the architecture has none.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kernels._jit import kernel
from kernels.activation import geglu, swiglu
from kernels.attention_kv import attention_kv, seq_cache
from kernels.hadamard import fwht_rows, rot_sizes
from kernels.kv_quant import store_row
from kernels.lora import lora_add
from kernels.matmul import Activations, PackedMatrix
from kernels.norm import rms_norm
from kernels.qmatmul import fmatmul, qmatmul, quantize_activations, quantize_activations_parallel
from kernels.records import as_record
from kernels.rope import rope_apply
from service.model.config import ModelConfig
from service.model.weights import Layer

_NO_U8 = np.zeros(0, np.uint8)
_NO_U16 = np.zeros(0, np.uint16)
_NO_F32 = np.zeros(0, np.float32)


class MatRef(NamedTuple):
    """W (n, k) as the jitted code reads it; y = x @ W.T (layouts: kernels/packing.py)."""

    qs: np.ndarray  # uint8 packed codes (flat); empty for float matrices
    d: np.ndarray  # uint16 float16 bits of the block scales
    m: np.ndarray  # uint16 float16 bits of the block offsets (empty when sym)
    w: np.ndarray  # float layout (float32, or F16/BF16 bits); empty for quantized matrices
    n: int  # output rows; 0: an absent matrix (skipped)
    k: int  # input width
    width: int  # code layout (see PackedMatrix.width)
    bs: int  # weights per scale, at least 16
    is_float: bool
    sym: float  # symmetric types: offset = sym * scale (0.0: m is stored)


class QuantActs(NamedTuple):
    """int8 form of activations x (T, k), shared by every quantized matrix that reads x."""

    xq: np.ndarray  # int8 (max_T, k)
    dx: np.ndarray  # float32 (max_T, k // 32) scale per 32 values
    sx: np.ndarray  # float32 (max_T, k // 16) sums per 16 values
    wide: np.ndarray  # uint8 (threads, k // 32 * 512) qmatmul's prefill widening buffer, or (threads, 0)


class LayerBuffers(NamedTuple):
    """Work buffers for T tokens (outputs of every step; x is also the layer's input)."""

    x: np.ndarray  # (T, n_embd) the residual stream, updated in place
    h: np.ndarray  # (T, n_embd) normed x, then each block's output
    qkv: np.ndarray  # (T, n_q + 2 n_kv) fused Q/K/V projection
    q: np.ndarray  # (T, n_head, head_dim)
    k: np.ndarray  # (T, n_head_kv, head_dim)
    att: np.ndarray  # (T, n_head, head_dim) attention output
    gu: np.ndarray  # (T, 2 n_ff) gate and up projections
    ff: np.ndarray  # (T, n_ff) activated gate * up
    act_e: QuantActs  # of h (width n_embd)
    act_q: QuantActs  # of att (width n_head * head_dim)
    act_f: QuantActs  # of ff (width n_ff)
    lora_s: np.ndarray  # (T, J) each token's scale per LoRA adapter (J = 0: none loaded)
    lora_ax: np.ndarray  # (T, r) kernels.lora's scratch
    codes: np.ndarray  # int32 (32,) the KV cache quantizers' scratch (kernels.kv_quant)


class LayerWeights(NamedTuple):
    attn_norm: np.ndarray  # float32 (n_embd,) or empty (olmo2: attention reads x itself)
    wqkv: tuple[MatRef, MatRef, MatRef]  # [Q;K;V] fused then 2 absent, or Q, K, V
    bqkv: np.ndarray  # float32 (n_q + 2 n_kv,) or empty
    q_norm: np.ndarray  # float32 (head_dim,), (n_head * head_dim,) over the whole projection (olmo2), or empty
    k_norm: np.ndarray  # float32 (head_dim,), (n_head_kv * head_dim,), or empty
    wo: MatRef
    post_attn_norm: np.ndarray  # float32 (n_embd,) or empty
    ffn_norm: np.ndarray  # float32 (n_embd,) or empty
    wgu: tuple[MatRef, MatRef]  # [gate; up] fused then 1 absent, or gate, up
    wdown: MatRef
    post_ffn_norm: np.ndarray  # float32 (n_embd,) or empty
    lora_a: tuple  # 7 x float32 (J, r, k): LoRA A of Q, K, V, O, gate, up, down (service.model.lora.TARGETS)
    lora_b: tuple  # 7 x float32 (J, n, r): their B, pre-scaled by alpha / r
    bo: np.ndarray  # float32 (n_embd,) the output projection's bias (gpt-oss), or empty
    sinks: np.ndarray  # float32 (n_head,) each head's sink logit (gpt-oss), or empty


class LayerConfig(NamedTuple):
    eps: float  # RMSNorm epsilon
    rope_dims: int  # 0: this layer has no RoPE (smollm3's every 4th)
    neox: bool  # RoPE pairs (i, i + d/2) rather than (2i, 2i + 1)
    attn_scale: float
    window: int  # sliding window of this layer; 0: global attention
    softcap: float  # attention logit soft-cap; 0: none
    gelu: bool  # GELU-tanh gate rather than SiLU
    ffn: bool  # run the dense FFN block; False: a MoE layer, whose FFN service.model.moe runs next
    res_scale: float  # each block's output times this before the residual add (granite; else 1)


def mat_ref(m: PackedMatrix | None, k: int = 0) -> MatRef:
    """A PackedMatrix as a MatRef; None gives an absent matrix of width k."""
    if m is None:
        return MatRef(_NO_U8, _NO_U16, _NO_U16, _NO_F32, 0, k, 8, 32, False, 0.0)
    w = m.w if m.is_float else _NO_F32
    return MatRef(m.qs, m.d, m.m, w, m.n, m.k, m.width, max(m.bs, 16), m.is_float, float(m.sym))


def quant_acts(t: int, k: int) -> QuantActs:
    """int8 activation buffers for up to t rows of width k (see kernels.matmul.Activations)."""
    a = Activations(t, k)
    return QuantActs(a.xq, a.dx, a.sx, a.wide)


def _vec(v: np.ndarray | None) -> np.ndarray:
    """A writable float32 copy (or the empty vector): the file's vectors are read-only views, and Numba
    compiles layer() once per read-only/writable mix, which differs between architectures (one more
    compile of the whole layer per mix, tens of seconds each); copies of a few vectors cost nothing."""
    return _NO_F32 if v is None else np.array(v, np.float32)


def layer_weights(c: ModelConfig, L: Layer, lora: tuple[tuple, tuple]) -> LayerWeights:
    """The weights of one CPU layer, built once; lora: its (A, B) tuples (service.model.lora.Adapters)."""
    qkv = [mat_ref(m) for m in L.wqkv] + [mat_ref(None, c.n_embd)] * (3 - len(L.wqkv))
    gu = [mat_ref(m) for m in L.wgate_up] + [mat_ref(None, c.n_embd)] * (2 - len(L.wgate_up))
    return LayerWeights(_vec(L.attn_norm), tuple(qkv), _vec(L.bqkv), _vec(L.q_norm), _vec(L.k_norm), mat_ref(L.wo),
                        _vec(L.post_attn_norm), _vec(L.ffn_norm), tuple(gu), mat_ref(L.wdown), _vec(L.post_ffn_norm),
                        lora[0], lora[1], _vec(L.bo), _vec(L.sinks))


def layer_config(c: ModelConfig, li: int) -> LayerConfig:
    """Layer li's scalars; fixed Python types, so every layer shares one compiled signature."""
    window = c.sliding_window if c.swa_layers[li] else 0
    rope = 0 if c.nope_layers and c.nope_layers[li] else c.rope_dims
    return LayerConfig(float(c.norm_eps), int(rope), bool(c.rope_neox), float(c.attn_scale), int(window),
                       float(c.attn_softcap), bool(c.gelu), not c.n_expert, float(c.residual_scale))


@kernel
def _quantize(a, x):
    """a (QuantActs) <- x (T, k): int8 activations for every quantized matrix reading x."""
    n = x.shape[0]
    if n >= 8:
        quantize_activations_parallel(a.xq[:n], a.dx[:n], a.sx[:n], x)
    else:
        quantize_activations(a.xq[:n], a.dx[:n], a.sx[:n], x)


@kernel
def _mm(out, a, x, m):
    """out (T, n) <- x (T, k) @ W.T for one MatRef m; a (QuantActs) holds x's int8 form."""
    n_tok = x.shape[0]
    if m.n == 0:
        return
    if m.is_float:
        fmatmul(out, x, m.w, m.n, m.k)
    else:
        qmatmul(out, a.xq[:n_tok], a.dx[:n_tok], a.sx[:n_tok], a.wide, m.qs, m.d, m.m, m.n, m.k, m.width, m.bs,
                m.sym)


@kernel
def _lora(out, x, b, w, i):
    """out (T, n) += the LoRA updates of matrix i (TARGETS order) for x (T, k)."""
    if b.lora_s.shape[1] > 0:
        lora_add(out, x, w.lora_a[i], w.lora_b[i], b.lora_s, b.lora_ax)


@kernel
def _pre_norm(h, x, weight, eps):
    """h <- RMSNorm(x) * weight; an empty weight: no norm (olmo2), h <- x."""
    if weight.shape[0] > 0:
        rms_norm(h, x, weight, eps)
    else:
        h[:] = x


@kernel
def _residual(x, h, scale):
    """x += h, h scaled first unless scale is 1 (granite's residual_scale)."""
    if scale != 1.0:
        h *= np.float32(scale)
    x += h


@kernel
def layer(bufs, kc, vc, scratch, cos, sin, pos, segs, weights, config):
    """x (T, n_embd) += attention(x) then += ffn(x), for one layer; the KV cache gets the batch's keys.

    bufs, weights, config: LayerBuffers, LayerWeights, LayerConfig as plain tuples (see module doc);
    kc, vc: this layer's keys and values, (type, f, h, b) tuples of (n_seq, n_kv, n_ctx, width) arrays
    (service.model.kvcache.KVCache.refs); scratch: attention's;
    cos, sin (T, rope_dims // 2); pos int32 (T,); segs int64 (n_seg, 3): (sequence, first token,
    end token) of each sequence's run.
    """
    b = as_record(LayerBuffers, bufs)
    w = as_record(LayerWeights, weights)
    cfg = as_record(LayerConfig, config)
    x, h, qkv, q, k, att, gu, ff = b.x, b.h, b.qkv, b.q, b.k, b.att, b.gu, b.ff
    n = x.shape[0]
    n_head, hd = q.shape[1], q.shape[2]
    n_kv = k.shape[1]
    nq, nkv = n_head * hd, n_kv * hd
    eps = cfg.eps
    # attention block
    _pre_norm(h, x, w.attn_norm, eps)
    _quantize(b.act_e, h)
    n0, n1 = w.wqkv[0].n, w.wqkv[1].n
    _mm(qkv[:, :n0], b.act_e, h, w.wqkv[0])
    _mm(qkv[:, n0 : n0 + n1], b.act_e, h, w.wqkv[1])
    _mm(qkv[:, n0 + n1 :], b.act_e, h, w.wqkv[2])
    _lora(qkv[:, :nq], h, b, w, 0)
    _lora(qkv[:, nq : nq + nkv], h, b, w, 1)
    _lora(qkv[:, nq + nkv :], h, b, w, 2)
    if w.bqkv.shape[0] > 0:
        for t in range(n):
            qkv[t] += w.bqkv
    for t in range(n):
        q[t].reshape(nq)[:] = qkv[t, :nq]
        k[t].reshape(nkv)[:] = qkv[t, nq : nq + nkv]
    if w.q_norm.shape[0] > 0:  # per head, or over the whole projection: rows as wide as the weights
        nqn, nkn = w.q_norm.shape[0], w.k_norm.shape[0]
        q2, k2 = q.reshape(n * nq // nqn, nqn), k.reshape(n * nkv // nkn, nkn)
        rms_norm(q2, q2, w.q_norm, eps)
        rms_norm(k2, k2, w.k_norm, eps)
    rope_apply(q, cos, sin, cfg.rope_dims, cfg.neox)
    rope_apply(k, cos, sin, cfg.rope_dims, cfg.neox)
    rot_k, rot_v = rot_sizes(kc[0], vc[0], hd)  # llama.cpp's rotation for block-type caches (kernels.hadamard)
    if rot_k > 0:
        fwht_rows(q.reshape(n * n_head, hd), rot_k)
        fwht_rows(k.reshape(n * n_kv, hd), rot_k)
    if rot_v > 0:
        for g in range(n_kv):  # the values, in place in qkv: (n, hd) rows of stride nq + 2 nkv
            fwht_rows(qkv[:, nq + nkv + g * hd : nq + nkv + (g + 1) * hd], rot_v)
    for s in range(segs.shape[0]):
        seq, s0, s1 = segs[s, 0], segs[s, 1], segs[s, 2]
        p0 = np.int64(pos[s1 - 1]) - (s1 - 1 - s0)  # the run's last: pos are mask positions (image rows: the image's last)
        for t in range(s0, s1):
            p = p0 + t - s0
            for g in range(n_kv):
                store_row(kc, seq, g, p, k[t, g], b.codes)
                store_row(vc, seq, g, p, qkv[t, nq + nkv + g * hd : nq + nkv + (g + 1) * hd], b.codes)
        attention_kv(att[s0:s1], q[s0:s1], seq_cache(kc, seq), seq_cache(vc, seq), pos[s0:s1], p0 + s1 - s0,
                     cfg.attn_scale, cfg.window, cfg.softcap, w.sinks, scratch)
    if rot_v > 0:
        fwht_rows(att.reshape(n * n_head, hd), rot_v)
    a2 = att.reshape(n, nq)
    _quantize(b.act_q, a2)
    _mm(h, b.act_q, a2, w.wo)
    _lora(h, a2, b, w, 3)
    if w.bo.shape[0] > 0:
        for t in range(n):
            h[t] += w.bo
    if w.post_attn_norm.shape[0] > 0:
        rms_norm(h, h, w.post_attn_norm, eps)
    _residual(x, h, cfg.res_scale)
    if not cfg.ffn:
        return
    # feed-forward block
    _pre_norm(h, x, w.ffn_norm, eps)
    _quantize(b.act_e, h)
    n_ff = ff.shape[1]
    g0 = w.wgu[0].n
    _mm(gu[:, :g0], b.act_e, h, w.wgu[0])
    _mm(gu[:, g0:], b.act_e, h, w.wgu[1])
    _lora(gu[:, :n_ff], h, b, w, 4)
    _lora(gu[:, n_ff:], h, b, w, 5)
    if cfg.gelu:
        geglu(ff, gu[:, :n_ff], gu[:, n_ff:])
    else:
        swiglu(ff, gu[:, :n_ff], gu[:, n_ff:])
    _quantize(b.act_f, ff)
    _mm(h, b.act_f, ff, w.wdown)
    _lora(h, ff, b, w, 6)
    if w.post_ffn_norm.shape[0] > 0:
        rms_norm(h, h, w.post_ffn_norm, eps)
    _residual(x, h, cfg.res_scale)
