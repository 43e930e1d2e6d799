"""BERT-family encoders (`bert`, `nomic-bert`, `jina-bert-v2`): a non-causal forward pass that gives
every token's hidden state.

As llama.cpp builds `bert`: token embedding + token-type row 0 + absolute position embedding,
a LayerNorm, then per layer self-attention over the whole sequence (no mask, no KV cache),
residual and LayerNorm after it (post-norm), a GELU FFN with biases, residual and LayerNorm.
`nomic-bert` has no position embedding but RoPE (NeoX pairs) on Q and K, a fused QKV matrix and a
SwiGLU FFN without biases. `jina-bert-v2` has neither: ALiBi biases the attention scores by
-slope_h |i - j|; optional LayerNorms on Q and K and a second post-attention norm; a GELU-gated FFN
(its gate a matrix of its own, or the first half of a double-width up matrix). The last layer's
output is the hidden state (no final norm); pooling is the server's.

A sequence is encoded whole in one call: its tokens attend to later ones, so a prompt cannot be
split across batches (the engine keeps an encoder's prompt in one batch and refuses one larger
than the batch, as llama-server does). The matrices are dequantized to float32 once and run
through NumPy's BLAS: the model is small (MiniLM-L6: 22M parameters) and the work is a few
(T, n_embd) x (n_embd, n) products per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kernels.dequant import dequantize
from service.model.config import ModelConfig, ModelError
from service.model.encoder_config import (  # noqa: F401 (re-exported)
    ALIBI_MAX_BIAS,
    ENCODERS,
    encoder_config,
    refusal,
)
from service.model.forward import Batch, ForwardOut
from service.model.logits import HostLogits

# Read by service.model.rank (a reranker's classification head) rather than here.
RANK_HEAD = ("cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias")


@dataclass
class EncoderLayer:
    wqkv: np.ndarray  # float32 (n_embd, 3 n_embd): x @ wqkv -> [q | k | v]
    bqkv: np.ndarray  # float32 (3 n_embd,)
    wo: np.ndarray  # float32 (n_embd, n_embd)
    bo: np.ndarray
    attn_norm: tuple[np.ndarray, np.ndarray]  # LayerNorm (weight, bias) after attention + residual
    w_up: np.ndarray  # float32 (n_embd, n_ff)
    b_up: np.ndarray
    w_gate: np.ndarray | None  # float32 (n_embd, n_ff): the gate of a gated FFN; None: act(up)
    w_down: np.ndarray  # float32 (n_ff, n_embd)
    b_down: np.ndarray
    out_norm: tuple[np.ndarray, np.ndarray]  # LayerNorm after the FFN + residual
    act: str = "gelu"  # the gate's activation: gelu, silu (nomic-bert's SwiGLU)
    fused_gate: bool = False  # up (n_embd, 2 n_ff) is [gate | up] (jina-bert-v2's GEGLU)
    q_norm: tuple[np.ndarray, np.ndarray] | None = None  # LayerNorms over all of Q and of K (jina-bert-v2)
    k_norm: tuple[np.ndarray, np.ndarray] | None = None
    norm_2: tuple[np.ndarray, np.ndarray] | None = None  # after attn_norm: + layer input, LayerNorm again


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
    nomic, jina = c.arch == "nomic-bert", c.arch == "jina-bert-v2"
    opt_norm = lambda n: (r(n + ".weight", (E,)), r(n + ".bias", (E,))) if n + ".weight" in f.tensors else None
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
        up = f.tensors.get(p + "ffn_up.weight")
        fused = jina and up is not None and tuple(up.shape) == (E, 2 * F)  # [gate | up] in one matrix
        Fu = 2 * F if fused else F
        gate = nomic or (jina and p + "ffn_gate.weight" in f.tensors)
        layers.append(EncoderLayer(
            np.ascontiguousarray(wqkv), bqkv, np.ascontiguousarray(r(p + "attn_output.weight", (E, E)).T),
            _bias(r(p + "attn_output.bias", (E,), not nomic and c.arch != "bert"), E),
            (r(p + "attn_output_norm.weight", (E,)), r(p + "attn_output_norm.bias", (E,))),
            np.ascontiguousarray(r(p + "ffn_up.weight", (E, Fu)).T), _bias(r(p + "ffn_up.bias", (Fu,), False), Fu),
            np.ascontiguousarray(r(p + "ffn_gate.weight", (E, F)).T) if gate else None,
            np.ascontiguousarray(r(p + "ffn_down.weight", (F, E)).T), _bias(r(p + "ffn_down.bias", (E,), jina), E),
            (r(p + "layer_output_norm.weight", (E,)), r(p + "layer_output_norm.bias", (E,))),
            "silu" if nomic else "gelu", fused,
            *((opt_norm(p + "attn_q_norm"), opt_norm(p + "attn_k_norm"), opt_norm(p + "attn_norm_2")) if jina else ())))
    w = EncoderWeights(
        r("token_embd.weight", (E, c.n_vocab)), types[0].copy() if types is not None else np.zeros(E, np.float32),
        r("position_embd.weight", (E, c.n_ctx_train)) if c.arch == "bert" else None,
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


def alibi(T: int, H: int, max_bias: float) -> np.ndarray:
    """(H, T, T) float32: -slope_h |i - j|, ggml's slopes (m0^(h+1) for the first 2^floor(log2 H) heads,
    then m1^(2(h - n) + 1))."""
    n = 1 << int(math.floor(math.log2(H)))
    m0, m1 = 2.0 ** (-max_bias / n), 2.0 ** (-max_bias / 2.0 / n)
    slopes = np.array([m0 ** (h + 1) if h < n else m1 ** (2 * (h - n) + 1) for h in range(H)], np.float32)
    d = -np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]).astype(np.float32)
    return slopes[:, None, None] * d[None]


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
    bias = alibi(T, H, ALIBI_MAX_BIAS[c.arch]) if c.arch in ALIBI_MAX_BIAS else None
    for L in w.layers:
        qkv = x @ L.wqkv + L.bqkv  # (T, 3E)
        q2, k2, v2 = (qkv[:, i * c.n_embd:(i + 1) * c.n_embd] for i in range(3))
        if L.q_norm is not None:
            q2 = layer_norm(q2, L.q_norm, c.norm_eps)
        if L.k_norm is not None:
            k2 = layer_norm(k2, L.k_norm, c.norm_eps)
        q, k, v = (a.reshape(T, H, D).transpose(1, 0, 2) for a in (q2, k2, v2))
        if rot is not None:
            q, k = rope(q, *rot), rope(k, *rot)
        s = (q @ k.transpose(0, 2, 1)) * np.float32(c.attn_scale)  # (H, T, T): every token sees every token
        if bias is not None:
            s = s + bias
        s = np.exp(s - s.max(axis=2, keepdims=True))
        s /= s.sum(axis=2, keepdims=True)
        att = (s @ v).transpose(1, 0, 2).reshape(T, c.n_embd)  # (T, E)
        h = layer_norm(att @ L.wo + L.bo + x, L.attn_norm, c.norm_eps)
        x = h if L.norm_2 is None else layer_norm(h + x, L.norm_2, c.norm_eps)
        up = x @ L.w_up + L.b_up  # (T, F), or (T, 2F) [gate | up] when fused
        if L.fused_gate:
            g, up = up[:, :c.n_ff], up[:, c.n_ff:]
        elif L.w_gate is not None:
            g = x @ L.w_gate
        if L.w_gate is None and not L.fused_gate:
            ff = gelu(up)
        elif L.act == "silu":  # SwiGLU
            ff = g / (np.float32(1.0) + np.exp(-g)) * up
        else:  # GEGLU
            ff = gelu(g) * up
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

