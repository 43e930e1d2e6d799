"""Tiny synthetic GGUF models for tests, written with gguf.GGUFWriter.

`Spec` describes a model (architecture, sizes, one weight type per tensor kind, tied or
separate output head, sliding window); `write_model` writes it with random weights and a
minimal gpt2 tokenizer. The keyword arguments of `write_model` break a file on purpose for
the validation tests: metadata overrides (None deletes a key), dropped tensors, replaced
shapes or types.

Tensor names are llama.cpp's (as service/model/weights.py reads them); a matrix of numpy
shape (n_out, n_in) is stored with GGUF shape (n_in, n_out).

Weights are scaled so the forward pass stays in a realistic regime: matrices have standard
deviation 1/sqrt(n_in) (unit-variance outputs, attention scores of order 1), norm weights
are 1 + N(0, 0.1), biases N(0, 0.5), embeddings N(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFWriter
from gguf import GGMLQuantizationType as T

from tests.oracles.quant_blocks import FLOATS, QUANTIZED, random_matrix

ARCHS = ("llama", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "qwen2moe", "qwen3moe", "granite", "olmo2", "smollm3",
         "gpt-oss")
# Tensor kinds (the name without "blk.N." and ".weight") that take a chosen matrix type.
MATRICES = ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@dataclass
class Spec:
    arch: str = "llama"
    n_layer: int = 2
    n_embd: int = 64
    n_ff: int = 96
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 0  # 0: n_embd // n_head and no key_length key
    n_vocab: int = 72
    n_ctx: int = 256
    eps: float = 1e-6
    rope_base: float = 0.0  # 0: no freq_base key (the architecture's default)
    sliding_window: int = 0  # written when > 0 (gemma3 uses it on 5 of every 6 layers)
    tied: bool = True  # no output.weight: the head is token_embd
    types: dict[str, T] = field(default_factory=dict)  # MATRICES kind -> type; default F32
    seed: int = 0
    # Mixture of experts (n_expert > 0): ffn_gate_inp and ffn_{gate,up,down}_exps replace the FFN;
    # n_ff_exp 0: no expert_feed_forward_length key (llama's experts are n_ff wide); n_ff_shexp > 0:
    # qwen2moe's shared expert and its key.
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    n_ff_shexp: int = 0

    @property
    def hd(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


def tokenizer_metadata(n_vocab: int) -> dict[str, Any]:
    """A gpt2 tokenizer of n_vocab tokens: 2 control tokens, single characters, and merged
    pairs of the first characters with their merges."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    n_chars = min(len(chars), max(1, (n_vocab - 2) * 2 // 3))
    tokens = ["<|bos|>", "<|eos|>", *chars[:n_chars]]
    merges = []
    for a in chars[:n_chars]:
        for b in chars[:n_chars]:
            if len(tokens) >= n_vocab:
                break
            tokens.append(a + b)
            merges.append(f"{a} {b}")
    if len(tokens) != n_vocab:
        raise ValueError(f"cannot build a tokenizer of {n_vocab} tokens")
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.token_type": [3, 3] + [1] * (n_vocab - 2),
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
    }


def metadata(s: Spec) -> dict[str, Any]:
    a = s.arch
    m: dict[str, Any] = {
        f"{a}.block_count": s.n_layer, f"{a}.embedding_length": s.n_embd,
        f"{a}.feed_forward_length": s.n_ff, f"{a}.attention.head_count": s.n_head,
        f"{a}.attention.head_count_kv": s.n_head_kv, f"{a}.context_length": s.n_ctx,
        f"{a}.attention.layer_norm_rms_epsilon": s.eps, f"{a}.vocab_size": s.n_vocab,
    }
    if s.head_dim:
        m[f"{a}.attention.key_length"] = m[f"{a}.attention.value_length"] = s.head_dim
    if s.rope_base:
        m[f"{a}.rope.freq_base"] = s.rope_base
    if s.sliding_window:
        m[f"{a}.attention.sliding_window"] = s.sliding_window
    if s.n_expert:
        m[f"{a}.expert_count"], m[f"{a}.expert_used_count"] = s.n_expert, s.n_expert_used
    if s.n_ff_exp:
        m[f"{a}.expert_feed_forward_length"] = s.n_ff_exp
    if s.n_ff_shexp:
        m[f"{a}.expert_shared_feed_forward_length"] = s.n_ff_shexp
    m.update(tokenizer_metadata(s.n_vocab))
    return m


def tensor_shapes(s: Spec) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (numpy shape, kind): kind is a MATRICES entry, "norm" or "bias"."""
    e, nq, nkv = s.n_embd, s.n_head * s.hd, s.n_head_kv * s.hd
    out: dict[str, tuple[tuple[int, ...], str]] = {"token_embd.weight": ((s.n_vocab, e), "token_embd")}
    oss = s.arch == "gpt-oss"
    for i in range(s.n_layer):
        p = f"blk.{i}."
        if s.arch != "olmo2":  # post-norms only
            out[p + "attn_norm.weight"] = ((e,), "norm")
        if s.arch == "phi3":  # fused [Q; K; V], and [gate; up] below
            out[p + "attn_qkv.weight"] = ((nq + 2 * nkv, e), "attn_q")
        for kind, n in (("attn_q", nq), ("attn_k", nkv), ("attn_v", nkv)) if s.arch != "phi3" else ():
            out[f"{p}{kind}.weight"] = ((n, e), kind)
            if s.arch in ("qwen2", "qwen2moe", "gpt-oss"):
                out[f"{p}{kind}.bias"] = ((n,), "bias")
        if s.arch in ("gemma3", "qwen3", "qwen3moe"):
            out[p + "attn_q_norm.weight"] = ((s.hd,), "norm")
            out[p + "attn_k_norm.weight"] = ((s.hd,), "norm")
        if s.arch == "olmo2":  # over the whole projection
            out[p + "attn_q_norm.weight"] = ((nq,), "norm")
            out[p + "attn_k_norm.weight"] = ((nkv,), "norm")
        out[p + "attn_output.weight"] = ((e, nq), "attn_output")
        if oss:
            out[p + "attn_output.bias"] = ((e,), "bias")
            out[p + "attn_sinks.weight"] = ((s.n_head,), "sink")
        if s.arch in ("gemma2", "gemma3", "olmo2", "gpt-oss"):  # gpt-oss's is its FFN pre-norm
            out[p + "post_attention_norm.weight"] = ((e,), "norm")
        if s.arch not in ("olmo2", "gpt-oss"):
            out[p + "ffn_norm.weight"] = ((e,), "norm")
        if s.n_expert:
            out.update(_expert_shapes(s, p))
        elif s.arch == "phi3":
            out[p + "ffn_up.weight"] = ((2 * s.n_ff, e), "ffn_up")
        else:
            out[p + "ffn_gate.weight"] = ((s.n_ff, e), "ffn_gate")
            out[p + "ffn_up.weight"] = ((s.n_ff, e), "ffn_up")
        if not s.n_expert:
            out[p + "ffn_down.weight"] = ((e, s.n_ff), "ffn_down")
        if s.arch in ("gemma2", "gemma3", "olmo2"):
            out[p + "post_ffw_norm.weight"] = ((e,), "norm")
    out["output_norm.weight"] = ((e,), "norm")
    if not s.tied:
        out["output.weight"] = ((s.n_vocab, e), "output")
    return out


def _expert_shapes(s: Spec, p: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Layer p's MoE tensors: the router, the experts as 3-D (n_expert, n, k) tensors, the shared expert."""
    e, ne, f = s.n_embd, s.n_expert, s.n_ff_exp or s.n_ff
    out = {p + "ffn_gate_inp.weight": ((ne, e), "ffn_gate_inp"),
           p + "ffn_gate_exps.weight": ((ne, f, e), "ffn_gate"), p + "ffn_up_exps.weight": ((ne, f, e), "ffn_up"),
           p + "ffn_down_exps.weight": ((ne, e, f), "ffn_down")}
    if s.arch == "gpt-oss":  # biases on the router and on every expert
        out.update({p + "ffn_gate_inp.bias": ((ne,), "bias"), p + "ffn_gate_exps.bias": ((ne, f), "bias"),
                    p + "ffn_up_exps.bias": ((ne, f), "bias"), p + "ffn_down_exps.bias": ((ne, e), "bias")})
    if s.n_ff_shexp:
        fs = s.n_ff_shexp
        out.update({p + "ffn_gate_inp_shexp.weight": ((1, e), "ffn_gate_inp"),  # the converter's (n_embd, 1)
                    p + "ffn_gate_shexp.weight": ((fs, e), "ffn_gate"), p + "ffn_up_shexp.weight": ((fs, e), "ffn_up"),
                    p + "ffn_down_shexp.weight": ((e, fs), "ffn_down")})
    return out


def _tensor(rng: np.random.Generator, shape: tuple[int, ...], kind: str, qtype: T) -> np.ndarray:
    """Data as GGUFWriter.add_tensor takes it with raw_dtype=qtype: uint8 (rows, row bytes)."""
    if qtype not in FLOATS + QUANTIZED + (T.MXFP4,):  # a type the loader must refuse: zero bytes will do
        block, size = GGML_QUANT_SIZES[qtype]
        return np.zeros((*shape[:-1], shape[-1] // block * size), np.uint8)
    if kind in ("norm", "bias", "sink") and qtype not in (T.F32, T.F16):
        raise ValueError(f"synthetic vectors are F32 or F16, not {qtype.name}")
    if kind == "norm":
        vals = 1.0 + 0.1 * rng.standard_normal(shape)
    elif kind == "bias":
        vals = 0.5 * rng.standard_normal(shape)
    elif kind == "sink":  # gpt-oss's sink logits: of the scores' order, so a sink takes a real share
        vals = 1.0 + rng.standard_normal(shape)
    elif len(shape) == 3:  # stacked experts: one (n, k) matrix each
        ne, n, k = shape
        return _tensor(rng, (ne * n, k), kind, qtype).reshape(ne, n, -1)
    else:
        n, k = shape
        scale = 1.0 if kind == "token_embd" else 1.0 / np.sqrt(k)
        if qtype == T.Q4_K:
            return quantize_q4_k(rng.standard_normal((n, k)) * scale)
        # other K-quants: random blocks, whose weights are far larger than `scale` and biased
        return random_matrix(qtype, n, k, rng, scale)
    vals = vals.astype(np.float32)
    return vals.astype(np.float16).view(np.uint8) if qtype == T.F16 else vals.view(np.uint8)


def quantize_q4_k(v: np.ndarray) -> np.ndarray:
    """A plain Q4_K quantization (n, k) -> uint8 (n, k // 256 * 144): per 32 values
    w = d * sc * q - dmin * m with q in 0..15 and 6-bit sc, m; not llama.cpp's search for
    the best scales, but the same format, so weights keep the magnitude of v (gguf cannot
    quantize K-quants, and random blocks give large, biased weights)."""
    n, k = v.shape
    sub = v.astype(np.float32).reshape(-1, 8, 32)  # super-blocks of 8 sub-blocks
    lo = np.minimum(sub.min(axis=2), 0.0)
    scale, mins = (sub.max(axis=2) - lo) / 15.0, -lo
    d = (scale.max(axis=1, keepdims=True) / 63.0).astype(np.float16).astype(np.float32)
    dmin = (mins.max(axis=1, keepdims=True) / 63.0).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(np.divide(scale, d, out=np.zeros_like(scale), where=d > 0)), 0, 63).astype(np.uint8)
    m = np.clip(np.rint(np.divide(mins, dmin, out=np.zeros_like(mins), where=dmin > 0)), 0, 63).astype(np.uint8)
    step = (d * sc)[:, :, None]
    q = np.divide(sub + (dmin * m)[:, :, None], step, out=np.zeros_like(sub), where=step > 0)
    q = np.clip(np.rint(q), 0, 15).astype(np.uint8)
    packed = np.zeros((sub.shape[0], 12), np.uint8)  # 6-bit scales and mins, as get_scale_min_k4 reads them
    packed[:, 0:4] = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    packed[:, 4:8] = m[:, :4] | ((m[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:] & 0xF) | ((m[:, 4:] & 0xF) << 4)
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(-1, 128)  # 64 values per 32 bytes: low then high nibbles
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8), dmin.astype(np.float16).view(np.uint8),
                             packed, qs], axis=1)
    return blocks.reshape(n, k // 256 * 144)


def _add_meta(w: GGUFWriter, key: str, v: Any) -> None:
    if isinstance(v, bool):
        w.add_bool(key, v)
    elif isinstance(v, int):
        (w.add_uint32 if 0 <= v < 1 << 32 else w.add_int64)(key, v)
    elif isinstance(v, float):
        w.add_float32(key, v)
    elif isinstance(v, str):
        w.add_string(key, v)
    else:
        w.add_array(key, list(v))


def write_model(path: str | Path, s: Spec, *, meta: dict[str, Any] | None = None,
                drop: tuple[str, ...] = (), shapes: dict[str, tuple[int, ...]] | None = None,
                types: dict[str, T] | None = None, arch_name: str | None = None,
                same_head: bool = False, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write the model of spec s to path.

    meta: metadata overrides (value None deletes the key); drop: tensor names left out;
    shapes: numpy shapes replacing a tensor's; types: per tensor name, overriding the
    kind's type (norms and biases are F32 unless named here); arch_name: the
    general.architecture string (default s.arch); same_head: output.weight is a copy of
    token_embd (a separate head equal to the tied one); extra: more F32 tensors by name
    (e.g. a classification head), numpy shapes.
    """
    path = Path(path)
    rng = np.random.default_rng(s.seed)
    w = GGUFWriter(path, arch_name or s.arch)
    m = metadata(s)
    for k, v in (meta or {}).items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    for k, v in m.items():
        _add_meta(w, k, v)
    data = {}
    for name, (shape, kind) in tensor_shapes(s).items():
        shape = (shapes or {}).get(name, shape)
        qtype = (types or {}).get(name) or s.types.get(kind, T.F32)
        data[name] = (_tensor(rng, shape, kind, qtype), qtype, shape)
    if same_head and "output.weight" in data:
        data["output.weight"] = data["token_embd.weight"]
    for name, (arr, qtype, _) in data.items():
        if name not in drop:
            w.add_tensor(name, arr, raw_dtype=qtype)  # uint8 rows: the writer derives the shape
    for name, arr in (extra or {}).items():
        w.add_tensor(name, np.ascontiguousarray(arr, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

