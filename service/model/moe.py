"""The mixture-of-experts feed-forward block as one jitted call, after layer()'s attention block.

Per token: h = RMSNorm(x); the router's logits h @ R.T pick the top-k experts and their
weights (kernels.routing); x += sum over the chosen experts e of weight_e * down_e(silu(gate_e h)
* up_e h), plus sigmoid(h . g) * the shared expert's FFN of h where there is one (qwen2moe).
As llama.cpp's build_moe_ffn, which runs every token's k experts. gpt-oss: the router and every
expert matrix have biases, the k experts are the largest raw logits weighted by a softmax over
those k (softmax_weight), and the activation is the clamped swiglu_oai.

The batch's (token, slot) pairs are grouped by expert (a counting sort), and each expert that any
token chose runs once on the rows that chose it, gathered into one block: prefill then runs a
few wide matrix products per expert rather than one matrix-vector product per token and slot.
Records cross the jit boundary as plain tuples, as in service.model.layer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kernels._jit import kernel
from kernels.activation import swiglu, swiglu_oai
from kernels.norm import rms_norm
from kernels.qmatmul import fmatmul, qmatmul
from kernels.records import as_record, plain
from kernels.routing import route, route_softmax_weight
from service.model.config import ModelConfig
from service.model.experts import ExpertStack
from service.model.layer import MatRef, QuantActs, _mm, _quantize, mat_ref, quant_acts
from service.model.weights import Layer

_NO_F32 = np.zeros(0, np.float32)
_NO_ROWS = np.zeros((0, 0), np.float32)
OAI_ALPHA, OAI_LIMIT = 1.702, 7.0  # llama.cpp's constants for gpt-oss's swiglu_oai


class ExpertRef(NamedTuple):
    """An ExpertStack as the jitted code reads it: expert e is W_e (n, k) = (qs[e], d[e], m[e], w[e])."""

    qs: np.ndarray  # uint8 (n_expert, L), L = 0 for float types
    d: np.ndarray  # uint16 (n_expert, L)
    m: np.ndarray  # uint16 (n_expert, L)
    w: np.ndarray  # (n_expert, L) float layout, L = 0 for quantized types
    n: int
    k: int
    width: int
    bs: int
    is_float: bool
    sym: float


class MoEBuffers(NamedTuple):
    """Work buffers, sliced to the batch's T tokens (per-expert blocks use their first rows)."""

    x: np.ndarray  # (T, n_embd) the residual stream, updated in place
    h: np.ndarray  # (T, n_embd) normed x
    logits: np.ndarray  # (T, n_expert) router logits, then routing scratch
    ids: np.ndarray  # int32 (T, K) chosen experts, best first
    wts: np.ndarray  # float32 (T, K) their weights
    slots: np.ndarray  # int32 (T * K,) the (token * K + slot) pairs grouped by expert
    starts: np.ndarray  # int64 (n_expert + 1,) expert e's pairs are slots[starts[e]:starts[e + 1]]
    fill: np.ndarray  # int64 (n_expert,) the counting sort's cursors
    xe: np.ndarray  # (T, n_embd) the rows routed to one expert
    gu: np.ndarray  # (T, 2 n_ff_exp) their gate and up projections
    ff: np.ndarray  # (T, n_ff_exp) silu(gate) * up
    ye: np.ndarray  # (T, n_embd) an expert's (or the shared expert's) output
    acc: np.ndarray  # (T, n_embd) the weighted sum of the experts' outputs
    sgu: np.ndarray  # (T, 2 n_ff_shexp) the shared expert's gate and up; (T, 0) without one
    sff: np.ndarray  # (T, n_ff_shexp)
    act_e: QuantActs  # of h (width n_embd)
    act_x: QuantActs  # of xe (width n_embd)
    act_f: QuantActs  # of ff (width n_ff_exp)
    act_s: QuantActs  # of sff (width n_ff_shexp)


class MoEWeights(NamedTuple):
    ffn_norm: np.ndarray  # float32 (n_embd,)
    router: MatRef  # (n_expert, n_embd)
    gate: ExpertRef  # (n_ff_exp, n_embd) per expert
    up: ExpertRef
    down: ExpertRef  # (n_embd, n_ff_exp) per expert
    sgu: tuple[MatRef, MatRef]  # the shared expert's [gate; up] fused then 1 absent, or gate, up; absent: none
    sdown: MatRef  # (n_embd, n_ff_shexp), or absent
    sgate: np.ndarray  # float32 (n_embd,) the shared expert's gate vector, or empty
    rb: np.ndarray  # float32 (n_expert,) the router's bias (gpt-oss), or empty
    gb: np.ndarray  # float32 (n_expert, n_ff_exp) each expert's gate bias, or (0, 0)
    ub: np.ndarray  # float32 (n_expert, n_ff_exp) up bias, or (0, 0)
    db: np.ndarray  # float32 (n_expert, n_embd) down bias, or (0, 0)


class MoEConfig(NamedTuple):
    eps: float  # RMSNorm epsilon
    norm: bool  # renormalise the chosen weights to sum 1
    weight_softmax: bool  # gpt-oss: top-k of the raw logits, softmax over those k (else softmax, then top-k)
    oai: bool  # gpt-oss's swiglu_oai rather than SwiGLU


def expert_ref(s: ExpertStack) -> ExpertRef:
    return ExpertRef(s.qs, s.d, s.m, s.w, s.n, s.k, s.width, max(s.bs, 16), s.is_float, float(s.sym))


def moe_weights(c: ModelConfig, L: Layer) -> MoEWeights:
    """The jitted block's weights of one MoE layer, built once."""
    m = L.moe
    sgu = [mat_ref(x) for x in m.shexp_gate_up or []]
    sgu += [mat_ref(None, c.n_embd)] * (2 - len(sgu))
    f32 = lambda a: np.array(a, np.float32)  # noqa: E731  writable copies: one compile for every mix (layer._vec)
    sgate = _NO_F32 if m.shexp_gate is None else f32(m.shexp_gate)
    rb, gb, ub, db = (f32(b) for b in m.biases) if m.biases is not None else (_NO_F32, _NO_ROWS, _NO_ROWS, _NO_ROWS)
    return MoEWeights(f32(L.ffn_norm), mat_ref(m.router), expert_ref(m.gate),
                      expert_ref(m.up), expert_ref(m.down), tuple(sgu), mat_ref(m.shexp_down, c.n_ff_shexp), sgate,
                      rb, gb, ub, db)


class MoE:
    """Buffers for up to max_tokens tokens and every layer's weights, owned here and reused."""

    def __init__(self, c: ModelConfig, layers: list[Layer], max_tokens: int):
        t, e, k, f, fs = max_tokens, c.n_embd, c.n_expert_used, c.n_ff_exp, c.n_ff_shexp
        z = lambda *shape, dt=np.float32: np.zeros(shape, dt)  # noqa: E731
        self.bufs = (z(t, c.n_expert), z(t, k, dt=np.int32), z(t, k), z(t * k, dt=np.int32),
                     z(c.n_expert + 1, dt=np.int64), z(c.n_expert, dt=np.int64), z(t, e), z(t, 2 * f), z(t, f),
                     z(t, e), z(t, e), z(t, 2 * fs), z(t, fs))
        self.acts = (quant_acts(t, e), quant_acts(t, e), quant_acts(t, f), quant_acts(t, fs))
        self.weights = [plain(moe_weights(c, L)) if L.moe is not None else None for L in layers]
        self.config = plain(MoEConfig(float(c.norm_eps), bool(c.expert_norm), c.expert_gating == "softmax_weight",
                                      c.expert_act == "swiglu_oai"))
        self.k = k

    def buffers(self, x: np.ndarray, h: np.ndarray) -> tuple:
        """The plain MoEBuffers of a batch of len(x) tokens: x (T, n_embd) its residual stream."""
        n = len(x)
        lg, ids, wts, slots, starts, fill, xe, gu, ff, ye, acc, sgu, sff = self.bufs
        return plain(MoEBuffers(x, h, lg[:n], ids[:n], wts[:n], slots[: n * self.k], starts, fill, xe[:n], gu[:n],
                                ff[:n], ye[:n], acc[:n], sgu[:n], sff[:n], *self.acts))


@kernel
def _emm(out, a, x, s, e):
    """out (T, n) <- x (T, k) @ W_e.T for expert e of s (ExpertRef); a (QuantActs) holds x's int8 form."""
    n_tok = x.shape[0]
    if s.is_float:
        fmatmul(out, x, s.w[e], s.n, s.k)
    else:
        qmatmul(out, a.xq[:n_tok], a.dx[:n_tok], a.sx[:n_tok], a.wide, s.qs[e], s.d[e], s.m[e], s.n, s.k, s.width,
                s.bs, s.sym)


@kernel
def _group(b, n_expert):
    """b.slots, b.starts <- the (token * K + slot) pairs of b.ids grouped by expert, in token order."""
    ids, starts, fill, slots = b.ids, b.starts, b.fill, b.slots
    n, k = ids.shape
    starts[:] = 0
    for t in range(n):
        for j in range(k):
            starts[ids[t, j] + 1] += 1
    for e in range(n_expert):
        starts[e + 1] += starts[e]
        fill[e] = starts[e]
    for t in range(n):
        for j in range(k):
            e = ids[t, j]
            slots[fill[e]] = t * k + j
            fill[e] += 1


@kernel
def moe_ffn(bufs, weights, config):
    """x (T, n_embd) += the mixture of experts' output for RMSNorm(x); see the module doc.

    bufs, weights, config: MoEBuffers, MoEWeights, MoEConfig as plain tuples.
    """
    b = as_record(MoEBuffers, bufs)
    w = as_record(MoEWeights, weights)
    cfg = as_record(MoEConfig, config)
    x, h, acc, wts = b.x, b.h, b.acc, b.wts
    n, k = b.ids.shape
    n_expert = b.logits.shape[1]
    rms_norm(h, x, w.ffn_norm, cfg.eps)
    _quantize(b.act_e, h)
    _mm(b.logits, b.act_e, h, w.router)
    if w.rb.shape[0] > 0:
        for t in range(n):
            b.logits[t] += w.rb
    if cfg.weight_softmax:
        route_softmax_weight(b.ids, wts, b.logits)
    else:
        route(b.ids, wts, b.logits, cfg.norm)
    _group(b, n_expert)
    acc[:] = 0.0
    nf = b.ff.shape[1]
    for e in range(n_expert):
        s0, s1 = b.starts[e], b.starts[e + 1]
        m = s1 - s0
        if m == 0:
            continue
        xe, gu, ff, ye = b.xe[:m], b.gu[:m], b.ff[:m], b.ye[:m]
        for i in range(m):
            xe[i] = h[b.slots[s0 + i] // k]
        _quantize(b.act_x, xe)
        _emm(gu[:, :nf], b.act_x, xe, w.gate, e)
        _emm(gu[:, nf:], b.act_x, xe, w.up, e)
        if w.gb.shape[0] > 0:
            for i in range(m):
                gu[i, :nf] += w.gb[e]
                gu[i, nf:] += w.ub[e]
        if cfg.oai:
            swiglu_oai(ff, gu[:, :nf], gu[:, nf:], OAI_ALPHA, OAI_LIMIT)
        else:
            swiglu(ff, gu[:, :nf], gu[:, nf:])
        _quantize(b.act_f, ff)
        _emm(ye, b.act_f, ff, w.down, e)
        if w.db.shape[0] > 0:
            for i in range(m):
                ye[i] += w.db[e]
        for i in range(m):  # explicit loops: an array expression would allocate a temporary per row
            s = b.slots[s0 + i]
            t = s // k
            we = wts[t, s - t * k]
            for j in range(ye.shape[1]):
                acc[t, j] += we * ye[i, j]
    if w.sdown.n > 0:  # the shared expert, on every token, scaled by its sigmoid gate
        nfs = b.sff.shape[1]
        g0 = w.sgu[0].n
        _mm(b.sgu[:, :g0], b.act_e, h, w.sgu[0])
        _mm(b.sgu[:, g0:], b.act_e, h, w.sgu[1])
        swiglu(b.sff, b.sgu[:, :nfs], b.sgu[:, nfs:])
        _quantize(b.act_s, b.sff)
        ys = b.ye[:n]
        _mm(ys, b.act_s, b.sff, w.sdown)
        for t in range(n):
            g = np.float32(0.0)
            for i in range(h.shape[1]):
                g += h[t, i] * w.sgate[i]
            g = np.float32(1.0) / (np.float32(1.0) + np.exp(-g))
            for j in range(ys.shape[1]):
                acc[t, j] += g * ys[t, j]
    x += acc
