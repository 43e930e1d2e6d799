"""BERT-family encoders (`bert`, `nomic-bert`): a non-causal forward pass that gives every token's
hidden state.

As llama.cpp builds `bert`: token embedding + token-type row 0 + absolute position embedding,
a LayerNorm, then per layer self-attention over the whole sequence (no mask, no KV cache),
residual and LayerNorm after it (post-norm), a GELU FFN with biases, residual and LayerNorm.
`nomic-bert` has no position embedding but RoPE (NeoX pairs) on Q and K, a fused QKV matrix and a
SwiGLU FFN without biases. The last layer's output is the hidden state (no final norm); pooling
is the server's.

A sequence is encoded whole in one call: its tokens attend to later ones, so a prompt cannot be
split across batches (the engine keeps an encoder's prompt in one batch and refuses one larger
than the batch, as llama-server does). The matrices are dequantized to float32 once and run
through NumPy's BLAS: the model is small (MiniLM-L6: 22M parameters) and the work is a few
(T, n_embd) x (n_embd, n) products per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.dequant import dequantize
from service.model.config import ModelConfig, ModelError, _check_vocab, _get
from service.model.forward import Batch, ForwardOut
from service.model.logits import HostLogits

ENCODERS = ("bert", "nomic-bert")
# Read by service.model.rank (a reranker's classification head) rather than here.
RANK_HEAD = ("cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias")


def encoder_config(meta: dict[str, Any], path: str) -> ModelConfig:
    """The hyper-parameters llama.cpp reads for a `bert` file; the decoder-only fields get neutral values."""
    a = meta["general.architecture"]
    n_layer = _get(meta, path, f"{a}.block_count", int, lo=1, hi=1024)
    n_embd = _get(meta, path, f"{a}.embedding_length", int, lo=1, hi=1 << 17)
    n_ff = _get(meta, path, f"{a}.feed_forward_length", int, lo=1, hi=1 << 21)
    n_head = _get(meta, path, f"{a}.attention.head_count", int, lo=1, hi=1024)
    if n_embd % n_head:
        raise ModelError(f"{path}: {a}.attention.head_count: {n_head} does not divide embedding_length {n_embd}")
    n_head_kv = _get(meta, path, f"{a}.attention.head_count_kv", int, n_head, lo=1, hi=n_head)
    if n_head_kv != n_head:
        raise ModelError(f"{path}: {a}.attention.head_count_kv: {n_head_kv} != head_count {n_head} "
                         f"is not supported for {a}")
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = _get(meta, path, f"{a}.vocab_size", int, len(tokens) if tokens else None, lo=1, hi=1 << 24)
    _check_vocab(meta, path, f"{a}.vocab_size", n_vocab)
    n_ctx = _get(meta, path, f"{a}.context_length", int, lo=1, hi=1 << 24)
    eps = _get(meta, path, f"{a}.attention.layer_norm_epsilon", float, lo=0.0, hi=1.0)
    causal = meta.get(f"{a}.attention.causal", False)
    if causal:  # llama.cpp reads the key but a causal BERT is no model anyone ships: refused, not ignored
        raise ModelError(f"{path}: {a}.attention.causal: a causal {a} is not supported")
    head_dim = n_embd // n_head
    rope = a == "nomic-bert"  # rope_dims 0: no RoPE (bert's positions are an embedding)
    rope_dims = _get(meta, path, f"{a}.rope.dimension_count", int, head_dim, lo=2, hi=head_dim) if rope else 0
    if rope_dims % 2:
        raise ModelError(f"{path}: {a}.rope.dimension_count: {rope_dims} is odd")
    base = _get(meta, path, f"{a}.rope.freq_base", float, 10000.0, lo=1e-3, hi=1e12)
    kind = meta.get(f"{a}.rope.scaling.type", "none")
    if kind not in ("none", "linear") or _get(meta, path, f"{a}.rope.scaling.factor", float, 0.0, lo=0, hi=1e6) > 1:
        raise ModelError(f"{path}: {a}.rope.scaling: RoPE scaling is not supported for {a}")
    return ModelConfig(
        arch=a, n_layer=n_layer, n_embd=n_embd, n_ff=n_ff, n_head=n_head, n_head_kv=n_head, head_dim=head_dim,
        n_vocab=n_vocab, n_ctx_train=n_ctx, norm_eps=eps, rope_dims=rope_dims, rope_neox=True, rope_base=base,
        rope_scale=1.0, rope_base_swa=10000.0, rope_scale_swa=1.0, sliding_window=0, swa_layers=(False,) * n_layer,
        attn_scale=1.0 / math.sqrt(head_dim), embd_scale=1.0, gelu=True, qk_norm=False, post_norms=True,
        qkv_bias=True, attn_softcap=0.0, final_softcap=0.0, causal=False)


@dataclass
class EncoderLayer:
    wqkv: np.ndarray  # float32 (n_embd, 3 n_embd): x @ wqkv -> [q | k | v]
    bqkv: np.ndarray  # float32 (3 n_embd,)
    wo: np.ndarray  # float32 (n_embd, n_embd)
    bo: np.ndarray
    attn_norm: tuple[np.ndarray, np.ndarray]  # LayerNorm (weight, bias) after attention + residual
    w_up: np.ndarray  # float32 (n_embd, n_ff)
    b_up: np.ndarray
    w_gate: np.ndarray | None  # float32 (n_embd, n_ff): SwiGLU's gate (nomic-bert); None: GELU on up
    w_down: np.ndarray  # float32 (n_ff, n_embd)
    b_down: np.ndarray
    out_norm: tuple[np.ndarray, np.ndarray]  # LayerNorm after the FFN + residual


@dataclass
class EncoderWeights:
    tok_embd: np.ndarray  # float32 (n_vocab, n_embd)
    type_row: np.ndarray  # float32 (n_embd,): token type 0's row (zeros without token_types)
    pos_embd: np.ndarray | None  # float32 (n_ctx_train, n_embd); None: RoPE instead (nomic-bert)
    embd_norm: tuple[np.ndarray, np.ndarray]
    layers: list[EncoderLayer]


class _Reader:
    """Float32 tensors from the file, in NumPy order, each checked against its expected GGUF shape."""

    def __init__(self, f, cfg: ModelConfig):
        self.f, self.cfg, self.used = f, cfg, set()

    def __call__(self, name: str, shape: tuple[int, ...], required: bool = True) -> np.ndarray | None:
        t = self.f.tensors.get(name)
        if t is None:
            if required:
                raise ModelError(f"{self.f.path}: tensor {name}: missing (the {self.cfg.arch} loader needs it)")
            return None
        if tuple(t.shape) != shape:
            raise ModelError(f"{self.f.path}: tensor {name}: shape {list(t.shape)}, expected {list(shape)}")
        self.used.add(name)
        a = np.asarray(dequantize(self.f.data(name), t.qtype), np.float32)
        return a.reshape(shape[::-1])  # GGUF (ne0, ne1) -> NumPy (ne1, ne0)


def load_encoder(f, cfg: ModelConfig) -> EncoderWeights:
    """Every tensor of the file, or a ModelError naming the one that is missing, misshapen or unread."""
    c, r = cfg, _Reader(f, cfg)
    E, F = c.n_embd, c.n_ff
    n_types = int(f.metadata.get("tokenizer.ggml.token_type_count", 0) or 0)
    types = r("token_types.weight", (E, n_types), required=False) if n_types else None
    layers = []
    nomic = c.arch == "nomic-bert"
    for i in range(c.n_layer):
        p = f"blk.{i}."
        if nomic:  # llama.cpp's graph takes no FFN biases here: a file with them is refused, not misread
            for b in ("ffn_up.bias", "ffn_down.bias"):
                if p + b in f.tensors:
                    raise ModelError(f"{f.path}: tensor {p + b}: llama.cpp ignores FFN biases for {c.arch}")
        if p + "attn_qkv.weight" in f.tensors:  # fused [q | k | v] rows (nomic-bert)
            wqkv = r(p + "attn_qkv.weight", (E, 3 * E)).T
            bqkv = _bias(r(p + "attn_qkv.bias", (3 * E,), False), 3 * E)
        else:
            wqkv = np.concatenate([r(p + f"attn_{x}.weight", (E, E)).T for x in "qkv"], axis=1)
            bqkv = np.concatenate([r(p + f"attn_{x}.bias", (E,)) for x in "qkv"])
        layers.append(EncoderLayer(
            np.ascontiguousarray(wqkv), bqkv, np.ascontiguousarray(r(p + "attn_output.weight", (E, E)).T),
            _bias(r(p + "attn_output.bias", (E,), False), E),
            (r(p + "attn_output_norm.weight", (E,)), r(p + "attn_output_norm.bias", (E,))),
            np.ascontiguousarray(r(p + "ffn_up.weight", (E, F)).T), _bias(r(p + "ffn_up.bias", (F,), False), F),
            np.ascontiguousarray(r(p + "ffn_gate.weight", (E, F)).T) if nomic else None,
            np.ascontiguousarray(r(p + "ffn_down.weight", (F, E)).T), _bias(r(p + "ffn_down.bias", (E,), False), E),
            (r(p + "layer_output_norm.weight", (E,)), r(p + "layer_output_norm.bias", (E,)))))
    w = EncoderWeights(
        r("token_embd.weight", (E, c.n_vocab)), types[0].copy() if types is not None else np.zeros(E, np.float32),
        None if nomic else r("position_embd.weight", (E, c.n_ctx_train)),
        (r("token_embd_norm.weight", (E,)), r("token_embd_norm.bias", (E,))), layers)
    unused = [n for n in f.tensors if n not in r.used and n not in RANK_HEAD]
    if unused:  # as service.model.weights: never dropped silently
        raise ModelError(f"{f.path}: tensor(s) {', '.join(unused[:8])} are not used by the {c.arch} loader "
                         f"(llama.cpp: wrong number of tensors)")
    return w


def _bias(b: np.ndarray | None, n: int) -> np.ndarray:
    return b if b is not None else np.zeros(n, np.float32)


def layer_norm(x: np.ndarray, wb: tuple[np.ndarray, np.ndarray], eps: float) -> np.ndarray:
    """x (T, E) -> (T, E): per-row mean and variance (ggml_norm), then the affine weight and bias."""
    mu = x.mean(axis=1, keepdims=True)
    d = x - mu
    var = (d * d).mean(axis=1, keepdims=True)
    return d / np.sqrt(var + np.float32(eps)) * wb[0] + wb[1]


def gelu(x: np.ndarray) -> np.ndarray:
    """ggml_gelu's tanh form."""
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(np.float32(math.sqrt(2.0 / math.pi))
                                                          * (x + np.float32(0.044715) * x * x * x)))


def rope_table(T: int, dims: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (T, dims/2) of position p times base^(-2i/dims)."""
    inv = base ** (-np.arange(0, dims, 2, dtype=np.float64) / dims)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x (H, T, D): NeoX pairs (i, i + dims/2) of the first dims lanes rotated by their position's angle."""
    h = cos.shape[1]
    a, b = x[..., :h], x[..., h:2 * h]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin, x[..., 2 * h:]], axis=-1)


def encode(w: EncoderWeights, cfg: ModelConfig, tokens: np.ndarray) -> np.ndarray:
    """One whole sequence: int32 tokens (T,) -> float32 (T, n_embd) last-layer hidden states."""
    c = cfg
    T, H, D = len(tokens), c.n_head, c.head_dim
    x = w.tok_embd[tokens] + w.type_row
    if w.pos_embd is not None:
        x = x + w.pos_embd[:T]  # (T, E), positions 0 .. T-1
    x = layer_norm(x, w.embd_norm, c.norm_eps)
    rot = rope_table(T, c.rope_dims, c.rope_base) if c.rope_dims else None
    for L in w.layers:
        qkv = x @ L.wqkv + L.bqkv  # (T, 3E)
        q, k, v = (qkv[:, i * c.n_embd:(i + 1) * c.n_embd].reshape(T, H, D).transpose(1, 0, 2) for i in range(3))
        if rot is not None:
            q, k = rope(q, *rot), rope(k, *rot)
        s = (q @ k.transpose(0, 2, 1)) * np.float32(c.attn_scale)  # (H, T, T): every token sees every token
        s = np.exp(s - s.max(axis=2, keepdims=True))
        s /= s.sum(axis=2, keepdims=True)
        att = (s @ v).transpose(1, 0, 2).reshape(T, c.n_embd)  # (T, E)
        x = layer_norm(att @ L.wo + L.bo + x, L.attn_norm, c.norm_eps)
        up = x @ L.w_up + L.b_up  # (T, F)
        if L.w_gate is not None:  # SwiGLU: silu(gate) * up
            g = x @ L.w_gate
            ff = g / (np.float32(1.0) + np.exp(-g)) * up
        else:
            ff = gelu(up)
        x = layer_norm(ff @ L.w_down + L.b_down + x, L.out_norm, c.norm_eps)
    return np.ascontiguousarray(x, np.float32)


class Encoder:
    """Forward's interface for an encoder: a batch of whole sequences -> their tokens' hidden states."""

    def __init__(self, cfg: ModelConfig, w: EncoderWeights, cache, max_tokens: int):
        self.cfg, self.w, self.cache, self.max_tokens = cfg, w, cache, max_tokens

    def __call__(self, b: Batch) -> ForwardOut:
        c, n = self.cfg, len(b.tokens)
        if not 0 < n <= self.max_tokens:
            raise ValueError(f"batch of {n} tokens (max {self.max_tokens})")
        if b.tokens.min() < 0 or b.tokens.max() >= c.n_vocab:
            raise ValueError(f"token ids must be in [0, {c.n_vocab})")
        if b.want.any():
            raise ValueError("an encoder computes no logits")
        hidden = np.zeros((n, c.n_embd), np.float32)
        cuts = [0, *(np.flatnonzero(np.diff(b.seq)) + 1).tolist(), n]
        for s0, s1 in zip(cuts[:-1], cuts[1:]):
            if b.pos[s0] != 0 or b.pos[s1 - 1] != s1 - s0 - 1:
                raise ValueError(f"sequence {int(b.seq[s0])}: an encoder takes a whole sequence from position 0")
            if s1 - s0 > c.n_ctx_train:
                raise ValueError(f"sequence {int(b.seq[s0])}: {s1 - s0} tokens exceed the {c.n_ctx_train} positions")
            hidden[s0:s1] = encode(self.w, c, b.tokens[s0:s1])
            self.cache.length[int(b.seq[s0])] = s1 - s0  # the engine's bookkeeping; nothing is cached
        rows = np.flatnonzero(b.hidden) if b.hidden is not None else np.zeros(0, np.int64)
        return ForwardOut(HostLogits(np.zeros((0, c.n_vocab), np.float32)), hidden[rows])


def refusal(n_prompt: int, embd: bool, max_batch: int) -> str | None:
    """llama-server's error for a task an encoder cannot run, or None: a completion (no logits
    without a KV cache) or a prompt larger than one batch (it cannot be split)."""
    if not embd:
        return "the current context does not support logits computation. skipping"
    if n_prompt > max_batch:
        return (f"input ({n_prompt} tokens) is too large to process. increase the physical batch size "
                f"(current batch size: {max_batch})")
    return None
