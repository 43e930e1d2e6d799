"""The transformer forward pass over a batch that mixes sequences.

A batch is a list of tokens, each with its sequence, its position and whether its logits
are wanted. The tokens of one sequence are contiguous and their positions consecutive,
continuing that sequence's cache (a prompt chunk, or one decode token). Every matrix
product runs over the whole batch; attention runs per sequence segment on its own cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.attention import new_scratch
from kernels.dequant import dequantize
from kernels.matmul import Activations, matmul
from kernels.norm import rms_norm
from kernels.rope import rope_cache
from service.model.config import ModelConfig
from service.model.kvcache import KVCache
from service.model.layer import layer, mat_args
from service.model.placement import Placement
from service.model.weights import Layer, Weights


@dataclass
class Batch:
    tokens: np.ndarray  # int32 (T,)
    seq: np.ndarray  # int32 (T,) sequence of each token
    pos: np.ndarray  # int32 (T,) position of each token in its sequence
    want: np.ndarray  # bool (T,) return logits for this token
    hidden: np.ndarray | None = None  # bool (T,) keep this token's final-norm hidden state (embeddings)


class Forward:
    """Buffers for up to `max_tokens` tokens per call, owned here and reused."""

    def __init__(self, cfg: ModelConfig, w: Weights, cache: KVCache, max_tokens: int,
                 place: Placement | None = None):
        self.cfg, self.w, self.cache = cfg, w, cache
        self.place = place or Placement("0", cfg.n_layer, 0, False, "")
        self.offload = None  # service.model.offload.Offload: layers 0 .. n_gpu-1 (and maybe the head)
        if self.place.on_gpu:
            from service.model.offload import Offload

            self.offload = Offload(cfg, w, cache, self.place, max_tokens)
        self.max_tokens = max_tokens
        c, t = cfg, max_tokens
        nq, nkv = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
        self.x = np.zeros((t, c.n_embd), np.float32)  # the residual stream
        self.h = np.zeros((t, c.n_embd), np.float32)
        self.qkv = np.zeros((t, nq + 2 * nkv), np.float32)
        self.q = np.zeros((t, c.n_head, c.head_dim), np.float32)
        self.k = np.zeros((t, c.n_head_kv, c.head_dim), np.float32)
        self.att = np.zeros((t, c.n_head, c.head_dim), np.float32)
        self.gu = np.zeros((t, 2 * c.n_ff), np.float32)
        self.ff = np.zeros((t, c.n_ff), np.float32)
        self.act_e = _act(t, c.n_embd)
        self.act_q = _act(t, nq)
        self.act_f = _act(t, c.n_ff)
        n_gpu = self.place.n_gpu
        self.layer_args = [None] * n_gpu + [_layer_args(c, L) for L in w.layers[n_gpu:]]  # CPU layers
        half = c.rope_dims // 2
        self.cos = np.zeros((2, t, half), np.float32)  # [global, sliding-window] tables
        self.sin = np.zeros((2, t, half), np.float32)
        self.scratch = new_scratch(cache.n_ctx, c.head_dim)

    def __call__(self, b: Batch, lazy: bool = False) -> np.ndarray:
        """Run the batch, update the cache, return logits (n_wanted, n_vocab) in batch order.

        lazy: when the head runs on the GPU, return them as offload.DeviceLogits (rows fetched on
        demand, or only their top k) instead of copying every row to the host."""
        c, w, kv = self.cfg, self.w, self.cache
        n = len(b.tokens)
        if not 0 < n <= self.max_tokens:
            raise ValueError(f"batch of {n} tokens (max {self.max_tokens})")
        if b.tokens.min() < 0 or b.tokens.max() >= c.n_vocab:
            raise ValueError(f"token ids must be in [0, {c.n_vocab})")
        if b.seq.min() < 0 or b.seq.max() >= kv.n_seq:
            raise ValueError(f"sequence ids must be in [0, {kv.n_seq})")
        segs = _segments(b.seq)
        for s0, s1 in segs:
            seq, p0 = int(b.seq[s0]), int(b.pos[s0])
            if p0 != kv.length[seq] or b.pos[s1 - 1] != p0 + (s1 - s0 - 1) or b.pos[s1 - 1] >= kv.n_ctx:
                raise ValueError(f"sequence {seq}: positions {p0}..{b.pos[s1 - 1]} do not continue its cache "
                                 f"of {kv.length[seq]} tokens within n_ctx {kv.n_ctx}")
        x = self.x[:n]
        x[:] = dequantize(w.embd[b.tokens], w.embd_type)
        if c.embd_scale != 1.0:
            x *= np.float32(c.embd_scale)
        pos = np.ascontiguousarray(b.pos, np.int32)
        rope_cache(self.cos[0, :n], self.sin[0, :n], pos, c.rope_dims, c.rope_base, c.rope_scale)
        if c.sliding_window:  # sliding-window layers have their own RoPE base (gemma3)
            rope_cache(self.cos[1, :n], self.sin[1, :n], pos, c.rope_dims, c.rope_base_swa, c.rope_scale_swa)
        segs_arr = np.array([(int(b.seq[s0]), s0, s1) for s0, s1 in segs], np.int64)
        bufs = (x, self.h[:n], self.qkv[:n], self.q[:n], self.k[:n], self.att[:n], self.gu[:n], self.ff[:n],
                self.act_e, self.act_q, self.act_f)
        if self.offload is not None:
            self.offload.layers(x, b.seq, pos, segs_arr, self.cos[:, :n], self.sin[:, :n])
        for li in range(self.place.n_gpu, c.n_layer):
            args = self.layer_args[li]
            swa = int(c.swa_layers[li])
            layer(*bufs, self.cos[swa, :n], self.sin[swa, :n], pos, segs_arr, kv.k[li], kv.v[li], self.scratch,
                  *args, c.norm_eps, c.rope_dims, c.rope_neox, c.attn_scale, c.sliding_window if swa else 0,
                  c.attn_softcap, c.gelu)
        for s0, s1 in segs:
            kv.length[int(b.seq[s0])] = int(b.pos[s1 - 1]) + 1
        self.hidden = None
        if self.place.output_on_gpu:
            hrows = np.flatnonzero(b.hidden) if b.hidden is not None else np.zeros(0, np.int64)
            logits, self.hidden = self.offload.head(np.flatnonzero(b.want), hrows, lazy)
            return logits
        if b.hidden is not None and b.hidden.any():  # (n_hidden, n_embd), read by the caller before the next call
            hrows = np.flatnonzero(b.hidden)
            self.hidden = np.empty((len(hrows), c.n_embd), np.float32)
            rms_norm(self.hidden, np.ascontiguousarray(x[hrows]), w.output_norm, c.norm_eps)
        rows = np.flatnonzero(b.want)
        if len(rows) == 0:
            return np.zeros((0, c.n_vocab), np.float32)
        hf = np.empty((len(rows), c.n_embd), np.float32)
        rms_norm(hf, np.ascontiguousarray(x[rows]), w.output_norm, c.norm_eps)
        logits = np.empty((len(rows), c.n_vocab), np.float32)
        matmul(logits, hf, w.output)
        if c.final_softcap > 0:
            logits = np.tanh(logits / c.final_softcap) * c.final_softcap
        return logits


def _segments(seq: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of equal sequence ids; a sequence may appear in one run only."""
    cuts = np.flatnonzero(np.diff(seq)) + 1
    bounds = [0, *cuts.tolist(), len(seq)]
    segs = list(zip(bounds[:-1], bounds[1:]))
    ids = [int(seq[s]) for s, _ in segs]
    if len(set(ids)) != len(ids):
        raise ValueError("the tokens of a sequence must be contiguous in the batch")
    return segs


def _act(t: int, k: int) -> tuple:
    """int8 activation buffers (xq, dx, sx, wide) for up to t rows of length k (see Activations)."""
    a = Activations(t, k)
    return a.xq, a.dx, a.sx, a.wide


def _vec(v: np.ndarray | None) -> np.ndarray:
    return np.zeros(0, np.float32) if v is None else np.ascontiguousarray(v, np.float32)


def _layer_args(c: ModelConfig, L: Layer) -> tuple:
    """The weight arguments of layer() for one layer, built once."""
    qkv = [mat_args(m) for m in L.wqkv] + [mat_args(None, c.n_embd)] * (3 - len(L.wqkv))
    gu = [mat_args(m) for m in L.wgate_up] + [mat_args(None, c.n_embd)] * (2 - len(L.wgate_up))
    return (_vec(L.attn_norm), tuple(qkv), _vec(L.bqkv), _vec(L.q_norm), _vec(L.k_norm), mat_args(L.wo),
            _vec(L.post_attn_norm), _vec(L.ffn_norm), tuple(gu), mat_args(L.wdown), _vec(L.post_ffn_norm))
