"""The transformer forward pass over a batch that mixes sequences.

A batch is a list of tokens, each with its sequence, its position and whether its logits
are wanted. The tokens of one sequence are contiguous and their positions consecutive,
continuing that sequence's cache (a prompt chunk, or one decode token). Every matrix
product runs over the whole batch; attention runs per sequence segment on its own cache.
A call returns a ForwardOut: the wanted logits (service.model.logits: the same interface on
the host and on the GPU) and the final-norm hidden states of the tokens that asked for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.attention import new_scratch
from kernels.dequant import dequantize
from kernels.lora import lora_add
from kernels.matmul import matmul
from kernels.norm import rms_norm
from kernels.records import plain
from kernels.rope import rope_cache
from service.model.config import ModelConfig
from service.model.kvcache import KVCache
from service.model.layer import LayerBuffers, layer, layer_config, layer_weights, quant_acts
from service.model.logits import HostLogits, LazyHostLogits, Logits
from service.model.lora import Adapters, no_adapters
from service.model.moe import MoE, moe_ffn
from service.model.placement import Placement
from service.model.weights import Weights, llamacpp_ctx_seq, rope_factors


@dataclass
class Batch:
    tokens: np.ndarray  # int32 (T,)
    seq: np.ndarray  # int32 (T,) sequence of each token
    pos: np.ndarray  # int32 (T,) position of each token in its sequence
    want: np.ndarray  # bool (T,) return logits for this token
    hidden: np.ndarray | None = None  # bool (T,) keep this token's final-norm hidden state (embeddings)
    lora: np.ndarray | None = None  # float32 (T, J) each token's LoRA adapter scales (None: the server-wide ones)
    embd: np.ndarray | None = None  # float32 (T, n_embd): rows used in place of the token embeddings where embd_mask
    embd_mask: np.ndarray | None = None  # bool (T,) the rows that are image embeddings (their tokens are ignored)
    attn_pos: np.ndarray | None = None  # int32 (T,) attention-mask positions (None: pos); image rows: their image's last
    # bool (T,): on the CPU, these tokens attend one query at a time, as a one-token decode step does (a sequence's
    # run is all or none): speculative verification then rounds as plain decoding, where several queries of a run
    # would share attention tiles that round differently (kernels.attention)
    alone: np.ndarray | None = None


@dataclass
class ForwardOut:
    """One forward pass's results, rows in batch order."""

    logits: Logits  # (n_wanted, n_vocab) of the tokens marked in Batch.want
    hidden: np.ndarray  # float32 (n_hidden, n_embd), a new array: tokens marked in Batch.hidden; (0, n_embd) if none


class Forward:
    """Buffers for up to `max_tokens` tokens per call, owned here and reused.

    n_ctx_seq: llama.cpp's context per sequence, which picks longrope's factor table
    (service.model.weights.rope_factors); 0: the cache's n_ctx as llama.cpp pads it."""

    def __init__(self, cfg: ModelConfig, w: Weights, cache: KVCache, max_tokens: int,
                 place: Placement | None = None, adapters: Adapters | None = None, n_ctx_seq: int = 0):
        self.cfg, self.w, self.cache = cfg, w, cache
        self.rope_freqs = rope_factors(cfg, w, n_ctx_seq or llamacpp_ctx_seq(cache.n_ctx))
        self.adapters = adapters if adapters is not None else no_adapters(cfg)
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
        n_ff = 0 if c.n_expert else c.n_ff  # MoE layers skip layer()'s FFN: self.moe has their buffers
        self.gu = np.zeros((t, 2 * n_ff), np.float32)
        self.ff = np.zeros((t, n_ff), np.float32)
        self.act_e = quant_acts(t, c.n_embd)
        self.act_q = quant_acts(t, nq)
        self.act_f = quant_acts(t, n_ff)
        self.moe = MoE(c, w.layers, t) if c.n_expert else None
        ad = self.adapters
        self.lora_s = np.zeros((t, ad.n), np.float32)
        self.lora_ax = np.zeros((t, max(ad.rank, 1)), np.float32)
        self.codes = np.zeros(32, np.int32)
        n_gpu = self.place.n_gpu
        # layer()'s LayerWeights and LayerConfig of each CPU layer, as plain tuples (kernels.records)
        self.layer_w = [None] * n_gpu + [plain(layer_weights(c, L, ad.layers[li]))
                                         for li, L in enumerate(w.layers) if li >= n_gpu]
        self.layer_cfg = [plain(layer_config(c, li)) for li in range(c.n_layer)]
        half = c.rope_dims // 2
        self.cos = np.zeros((2, t, half), np.float32)  # [global, sliding-window] tables
        self.sin = np.zeros((2, t, half), np.float32)
        self.scratch = new_scratch(cache.n_ctx, c.head_dim)

    def __call__(self, b: Batch) -> ForwardOut:
        """Run the batch, update the cache, return the wanted logits and hidden states.

        When the head runs on the GPU the logits stay there (offload.DeviceLogits)."""
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
        if b.embd is not None:  # image rows go in unscaled (llama.cpp scales token embeddings only)
            x[b.embd_mask] = b.embd[b.embd_mask]
        if b.attn_pos is not None and self.offload is not None:
            raise ValueError("image rows need every layer on the CPU (-ngl 0)")
        pos = np.ascontiguousarray(b.pos, np.int32)
        mpos = pos if b.attn_pos is None else np.ascontiguousarray(b.attn_pos, np.int32)
        rope_cache(self.cos[0, :n], self.sin[0, :n], pos, c.rope_dims, c.rope_base, c.rope_scale, self.rope_freqs,
                   c.rope_ext_factor, c.rope_attn_factor, *c.rope_corr_dims)  # llama3/longrope freqs, YaRN
        if c.sliding_window and c.swa_own_rope:  # sliding-window layers have their own RoPE base (gemma3)
            rope_cache(self.cos[1, :n], self.sin[1, :n], pos, c.rope_dims, c.rope_base_swa, c.rope_scale_swa)
        segs_arr = np.array([(int(b.seq[s0]), s0, s1) for s0, s1 in segs], np.int64)  # (n_seg, 3) seq, first, end
        cpu_segs = segs_arr
        if b.alone is not None and b.alone.any():  # such runs cut into short segments: (n_seg', 3), same order
            # kernels.attention tiles a segment's queries (all but its last) only when n_rep * (its length - 1)
            # reaches 8: shorter segments take the one-query path throughout, in fewer launches than one per token
            step = 1 + 7 // max(1, c.n_head // c.n_head_kv)
            split: list[tuple[int, int, int]] = []
            for q, s0, s1 in segs_arr.tolist():
                split.extend([(q, t, min(t + step, s1)) for t in range(s0, s1, step)] if b.alone[s0] else [(q, s0, s1)])
            cpu_segs = np.array(split, np.int64)
        lora_s = self.lora_s[:n]
        if self.adapters.n:
            lora_s[:] = b.lora if b.lora is not None else self.adapters.scales()
        bufs = plain(LayerBuffers(x, self.h[:n], self.qkv[:n], self.q[:n], self.k[:n], self.att[:n], self.gu[:n],
                                  self.ff[:n], self.act_e, self.act_q, self.act_f, lora_s, self.lora_ax[:n],
                                  self.codes))
        moe_bufs = self.moe.buffers(x, self.h[:n]) if self.moe is not None else None
        if self.offload is not None:
            self.offload.layers(x, b.seq, pos, segs_arr, self.cos[:, :n], self.sin[:, :n])
        for li in range(self.place.n_gpu, c.n_layer):
            swa = int(c.swa_layers[li] and c.swa_own_rope)
            kc, vc = kv.refs[li]
            layer(bufs, kc, vc, self.scratch, self.cos[swa, :n], self.sin[swa, :n], mpos, cpu_segs, self.layer_w[li],
                  self.layer_cfg[li])
            if moe_bufs is not None:
                moe_ffn(moe_bufs, self.moe.weights[li], self.moe.config)
        for s0, s1 in segs:
            kv.length[int(b.seq[s0])] = int(b.pos[s1 - 1]) + 1
        rows = np.flatnonzero(b.want)
        hrows = np.flatnonzero(b.hidden) if b.hidden is not None else rows[:0]
        if self.place.output_on_gpu:
            return ForwardOut(*self.offload.head(rows, hrows))
        if b.alone is not None and b.alone.any():  # drafted runs: the head runs for the rows verification reads
            normed, ls = self._normed(x, rows), np.ascontiguousarray(lora_s[rows])
            logits = LazyHostLogits(lambda r0, r1: self._head(normed[r0:r1], ls[r0:r1]), len(rows), c.n_vocab)
            return ForwardOut(logits, self._normed(x, hrows))
        return ForwardOut(HostLogits(self._logits(x, rows, lora_s[rows])), self._normed(x, hrows))

    def _normed(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_embd) final-norm hidden states of x's rows."""
        out = np.empty((len(rows), self.cfg.n_embd), np.float32)
        if len(rows):
            rms_norm(out, np.ascontiguousarray(x[rows]), self.w.output_norm, self.cfg.norm_eps)
        return out

    def _logits(self, x: np.ndarray, rows: np.ndarray, lora_s: np.ndarray) -> np.ndarray:
        """(len(rows), n_vocab) logits of x's rows: the output head on their final-norm states
        (plus the LoRA updates of the head, lora_s (len(rows), J) their scales)."""
        if len(rows) == 0:
            return np.zeros((0, self.cfg.n_vocab), np.float32)
        return self._head(self._normed(x, rows), lora_s)

    def _head(self, normed: np.ndarray, lora_s: np.ndarray) -> np.ndarray:
        """(R, n_vocab) logits of R final-norm states normed (R, n_embd); lora_s (R, J) their LoRA scales."""
        c = self.cfg
        logits = np.empty((len(normed), c.n_vocab), np.float32)
        matmul(logits, normed, self.w.output)
        if self.adapters.out is not None:
            lora_add(logits, normed, *self.adapters.out, np.ascontiguousarray(lora_s),
                     np.zeros((len(normed), max(self.adapters.rank, 1)), np.float32))
        if c.logit_scale != 1.0:  # granite divides by its logit_scale
            logits *= np.float32(c.logit_scale)
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
