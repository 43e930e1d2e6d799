"""Model hyper-parameters read from GGUF metadata, validated before anything is loaded.

One dataclass covers the supported architectures; the per-architecture differences are
flags (activation, norms, biases, RoPE ordering, sliding-window layers), as llama.cpp reads
them from the file. Every error names the file and the metadata key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ARCHITECTURES = ("llama", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "qwen2moe", "qwen3moe", "granite", "olmo2",
                 "smollm3", "gpt-oss")
MAX_EXPERTS = 1024  # llama.cpp's LLAMA_MAX_EXPERTS
MAX_LAYERS, MAX_HEADS, MAX_CTX, MAX_EMBD = 1024, 1024, 1 << 24, 1 << 17


class ModelError(ValueError):
    """A model file that cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int  # key/query width per head
    n_vocab: int
    n_ctx_train: int
    norm_eps: float
    rope_dims: int
    rope_neox: bool  # pairs (i, i + d/2) rather than (2i, 2i + 1)
    rope_base: float
    rope_scale: float  # freq_scale = 1 / scaling factor
    rope_base_swa: float  # sliding-window layers' own RoPE base (gemma3)
    rope_scale_swa: float
    sliding_window: int  # 0: none
    swa_layers: tuple[bool, ...]  # per layer: uses the sliding window
    attn_scale: float
    embd_scale: float  # gemma multiplies embeddings by sqrt(n_embd)
    gelu: bool  # GELU-tanh gate (gemma) rather than SiLU
    qk_norm: bool  # RMSNorm over each head of Q and K (gemma3, qwen3)
    post_norms: bool  # norms after attention and after the FFN (gemma3)
    qkv_bias: bool  # biases on Q, K, V (qwen2)
    attn_softcap: float
    final_softcap: float
    # YaRN (rope.scaling.type yarn): ext_factor 0 is off; attn_factor scales cos and sin (ggml's
    # mscale; with YaRN, llama.cpp cancels its own 1 + 0.1 ln(factor) here); corr_dims: the ramp.
    rope_ext_factor: float = 0.0
    rope_attn_factor: float = 1.0
    rope_corr_dims: tuple[float, float] = (0.0, 0.0)
    # phi3's longrope: llama.cpp's n_ctx_orig_yarn; a context per sequence above it takes the file's
    # rope_factors_long, else rope_factors_short (service.model.weights.rope_factors). 0: not read.
    rope_n_orig: int = 0
    # Mixture of experts (qwen2moe, qwen3moe, Mixtral-style llama): every layer's FFN is n_expert
    # FFNs of width n_ff_exp, n_expert_used of them per token (softmax router, top-k), plus a
    # shared expert of width n_ff_shexp behind a sigmoid gate (qwen2moe; 0: none).
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    n_ff_shexp: int = 0
    expert_norm: bool = False  # the top-k weights renormalised to sum 1 (qwen3moe, llama; not qwen2moe)
    # The newer families' particulars (service.model.variants reads them; the defaults change nothing):
    logit_scale: float = 1.0  # logits times this (granite: 1 / logit_scale)
    residual_scale: float = 1.0  # each block's output times this before the residual add (granite)
    nope_layers: tuple[bool, ...] = ()  # per layer: no RoPE at all (smollm3's every 4th); empty: none
    pre_norms: bool = True  # RMSNorm before attention and FFN (olmo2 has post-norms only)
    qk_norm_full: bool = False  # the Q/K RMSNorm spans the whole projection, not each head (olmo2)
    attn_out_bias: bool = False  # attn_output.bias (gpt-oss)
    attn_sinks: bool = False  # one learned logit per head in every softmax's denominator (gpt-oss)
    swa_own_rope: bool = True  # sliding-window layers use their own RoPE table (gpt-oss: the global one)
    expert_gating: str = "softmax"  # "softmax_weight": top-k of the raw logits, softmax over those k (gpt-oss)
    expert_bias: bool = False  # biases on the router and on every expert's gate, up and down (gpt-oss)
    expert_act: str = "silu"  # "swiglu_oai": gpt-oss's clamped SwiGLU (alpha 1.702, limit 7)
    causal: bool = True  # False: an encoder (service.model.encoder), no KV cache, no logits

    @property
    def n_embd_kv(self) -> int:
        return self.n_head_kv * self.head_dim


def _get(meta: dict[str, Any], path: str, key: str, kind, default=None, lo=None, hi=None):
    """Read, type-check and range-check one metadata value."""
    if key not in meta:
        if default is None:
            raise ModelError(f"{path}: {key}: missing")
        return default
    v = meta[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise ModelError(f"{path}: {key}: expected an integer, got {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
        raise ModelError(f"{path}: {key}: expected a finite number, got {v!r}")
    if lo is not None and not (lo <= v <= hi):
        raise ModelError(f"{path}: {key}: {v} is outside [{lo}, {hi}]")
    return kind(v)


def _check_vocab(meta: dict[str, Any], path: str, vocab_key: str, n_vocab: int) -> None:
    """The tokenizer's arrays cover the vocabulary and its special token ids fall inside it
    (a shorter scores array would be read past its end; an id >= n_vocab indexes past the
    embedding). llama.cpp only warns about a bad special id; we refuse the file."""
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is not None:
        if not isinstance(tokens, list):
            raise ModelError(f"{path}: tokenizer.ggml.tokens: expected an array of strings")
        if len(tokens) != n_vocab:
            raise ModelError(f"{path}: {vocab_key}: {n_vocab} disagrees with tokenizer.ggml.tokens "
                             f"({len(tokens)} tokens)")
        for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            arr = meta.get(key)
            if arr is None:
                continue
            if getattr(arr, "ndim", 0) != 1:
                raise ModelError(f"{path}: {key}: expected a numeric array")
            if len(arr) < len(tokens):
                raise ModelError(f"{path}: {key}: {len(arr)} entries for {len(tokens)} tokens")
    for key, v in meta.items():
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n_vocab:
                raise ModelError(f"{path}: {key}: {v!r} is not a token id of the {n_vocab}-token vocabulary")


def config_from_metadata(meta: dict[str, Any], path: str) -> ModelConfig:
    arch = meta.get("general.architecture")
    from service.model.encoder import ENCODERS, encoder_config  # encoders read their own keys

    if arch in ENCODERS:
        return encoder_config(meta, path)
    if arch not in ARCHITECTURES:  # llama.cpp: "unknown model architecture: 'x'"
        raise ModelError(f"{path}: general.architecture: unknown model architecture: {arch!r} "
                         f"(supported: {', '.join(ARCHITECTURES + ENCODERS)})")
    a = arch
    n_layer = _get(meta, path, f"{a}.block_count", int, lo=1, hi=MAX_LAYERS)
    n_embd = _get(meta, path, f"{a}.embedding_length", int, lo=1, hi=MAX_EMBD)
    n_ff = _get(meta, path, f"{a}.feed_forward_length", int, lo=1, hi=16 * MAX_EMBD)
    n_head = _get(meta, path, f"{a}.attention.head_count", int, lo=1, hi=MAX_HEADS)
    n_head_kv = _get(meta, path, f"{a}.attention.head_count_kv", int, n_head, lo=1, hi=n_head)
    if n_head % n_head_kv:
        raise ModelError(f"{path}: {a}.attention.head_count_kv: {n_head_kv} does not divide head_count {n_head}")
    head_dim = _get(meta, path, f"{a}.attention.key_length", int, n_embd // n_head, lo=1, hi=4096)
    v_dim = _get(meta, path, f"{a}.attention.value_length", int, head_dim, lo=1, hi=4096)
    if v_dim != head_dim:
        raise ModelError(f"{path}: {a}.attention.value_length: {v_dim} != key_length {head_dim} is not supported")
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = _get(meta, path, f"{a}.vocab_size", int, len(tokens) if tokens else None, lo=1, hi=1 << 24)
    _check_vocab(meta, path, f"{a}.vocab_size", n_vocab)
    n_ctx = _get(meta, path, f"{a}.context_length", int, lo=1, hi=MAX_CTX)
    eps = _get(meta, path, f"{a}.attention.layer_norm_rms_epsilon", float, lo=0.0, hi=1.0)
    rope_dims = _get(meta, path, f"{a}.rope.dimension_count", int, head_dim, lo=2, hi=head_dim)
    if rope_dims % 2:
        raise ModelError(f"{path}: {a}.rope.dimension_count: {rope_dims} is odd")
    default_base = 1e6 if a == "gemma3" else 10000.0
    rope_base = _get(meta, path, f"{a}.rope.freq_base", float, default_base, lo=1e-3, hi=1e12)
    # Only gemma3 slides its window here; llama.cpp ignores the key for llama (Mistral v0.1) and
    # turns phi3's off ("Phi SWA is currently disabled"), and so do we.
    # gemma2 without the key: llama.cpp's 4096.
    window = _get(meta, path, f"{a}.attention.sliding_window", int, 4096 if a == "gemma2" else None if a == "gpt-oss"
                  else 0, lo=0, hi=MAX_CTX)
    gemma = a in ("gemma2", "gemma3")
    factor, yarn = _rope_scaling(meta, path, a, n_ctx, rope_dims, rope_base, gemma and window > 0)
    swa = _swa_layers(meta, path, a, n_layer, window) if gemma or a in ("gpt-oss", "olmo2") else (False,) * n_layer
    g3 = a == "gemma3"  # its local layers use base 10000, unscaled; gemma2's share the global RoPE
    if a == "gemma2":
        # llama.cpp's gemma2 always caps: attention scores at 50 and logits at 30 unless the file says
        att_cap = _get(meta, path, f"{a}.attn_logit_softcapping", float, 50.0, lo=0.0, hi=1e6)
        final_cap = _get(meta, path, f"{a}.final_logit_softcapping", float, 30.0, lo=1e-6, hi=1e6)
        base_swa = _get(meta, path, f"{a}.rope.freq_base_swa", float, rope_base, lo=1e-3, hi=1e12)
        # Gemma 2 27B (46 layers) scales queries by n_embd / n_head rather than the head width.
        attn_scale = 1.0 / math.sqrt(n_embd // n_head if n_layer == 46 else head_dim)
    else:
        att_cap = _get(meta, path, f"{a}.attn_logit_softcapping", float, 0.0, lo=0.0, hi=1e6)
        final_cap = _get(meta, path, f"{a}.final_logit_softcapping", float, 0.0, lo=0.0, hi=1e6)
        base_swa = 10000.0 if g3 else rope_base
        attn_scale = 1.0 / math.sqrt(head_dim)
    cfg = ModelConfig(
        arch=a, n_layer=n_layer, n_embd=n_embd, n_ff=n_ff, n_head=n_head, n_head_kv=n_head_kv,
        head_dim=head_dim, n_vocab=n_vocab, n_ctx_train=n_ctx, norm_eps=eps, rope_dims=rope_dims,
        rope_neox=a not in ("llama", "granite", "smollm3"), rope_base=rope_base, rope_scale=1.0 / factor,
        rope_base_swa=base_swa, rope_scale_swa=1.0 if g3 else 1.0 / factor,
        sliding_window=window if any(swa) else 0, swa_layers=swa,
        attn_scale=attn_scale, embd_scale=math.sqrt(n_embd) if gemma else 1.0,
        gelu=gemma, qk_norm=a in ("gemma3", "qwen3", "qwen3moe"), post_norms=gemma, qkv_bias=a in ("qwen2", "qwen2moe"),
        attn_softcap=att_cap, final_softcap=final_cap,
        **yarn, **_experts(meta, path, a, n_ff),
    )
    from service.model.variants import particulars

    return particulars(cfg, meta, path)


# Keys that llama.cpp ignores for these architectures (it hard-codes softmax gating, no scale,
# and renormalisation for qwen3moe and llama only): a file that sets another value would run
# differently from what its author meant, or from llama.cpp: refused. Gating: 1 softmax, 2 sigmoid,
# 4 sqrt-softplus (gguf's ExpertGatingFuncType).
_GATING = {1: "softmax", 2: "sigmoid", 3: "softmax_weight", 4: "sqrtsoftplus"}


def _experts(meta: dict[str, Any], path: str, a: str, n_ff: int) -> dict[str, Any]:
    """The mixture-of-experts fields, as llama.cpp reads them for qwen2moe, qwen3moe and llama."""
    moe = a in ("qwen2moe", "qwen3moe", "gpt-oss")
    n_expert = _get(meta, path, f"{a}.expert_count", int, 0 if not moe else None, lo=0, hi=MAX_EXPERTS)
    if not n_expert:
        return {}
    if a not in ("llama", "qwen2moe", "qwen3moe", "gpt-oss"):
        raise ModelError(f"{path}: {a}.expert_count: mixture-of-experts {a} models ({n_expert} experts) "
                         f"are not supported (qwen2moe, qwen3moe, gpt-oss and Mixtral-style llama are)")
    n_used = _get(meta, path, f"{a}.expert_used_count", int, lo=1, hi=n_expert)
    groups = _get(meta, path, f"{a}.expert_group_count", int, 0, lo=0, hi=MAX_EXPERTS)
    if groups > 1:  # DeepSeek-V3's group-limited routing, which llama.cpp applies to any arch
        raise ModelError(f"{path}: {a}.expert_group_count: grouped expert routing ({groups} groups) "
                         f"is not supported")
    gating = 3 if a == "gpt-oss" else 1  # gpt-oss: llama.cpp's softmax_weight (3), whatever the key says
    func = meta.get(f"{a}.expert_gating_func", gating)
    if func != gating:
        name = _GATING.get(func, "unknown") if isinstance(func, int) else "unknown"
        raise ModelError(f"{path}: {a}.expert_gating_func: {func!r} ({name}) is not supported "
                         f"(llama.cpp routes {a} with {_GATING[gating]}, {gating})")
    scale = _get(meta, path, f"{a}.expert_weights_scale", float, 0.0, lo=-1e6, hi=1e6)
    if scale not in (0.0, 1.0):
        raise ModelError(f"{path}: {a}.expert_weights_scale: {scale} is not supported (llama.cpp ignores it "
                         f"for {a} and does not scale)")
    norm = a not in ("qwen2moe", "gpt-oss")
    key = f"{a}.expert_weights_norm"
    if key in meta and bool(meta[key]) != norm:
        raise ModelError(f"{path}: {key}: {meta[key]!r} is not supported (llama.cpp ignores it for {a} "
                         f"and uses {str(norm).lower()})")
    # Expert widths: llama's are n_ff; qwen's their own key, else n_ff / n_used (llama.cpp's default);
    # gpt-oss requires the key.
    n_ff_exp = n_ff if a == "llama" else _get(meta, path, f"{a}.expert_feed_forward_length", int,
                                               None if a == "gpt-oss" else max(1, n_ff // n_used),
                                               lo=1, hi=16 * MAX_EMBD)
    n_ff_shexp = 0
    if a == "qwen2moe":
        n_ff_shexp = _get(meta, path, f"{a}.expert_shared_feed_forward_length", int, n_ff, lo=1, hi=16 * MAX_EMBD)
    return dict(n_expert=n_expert, n_expert_used=n_used, n_ff_exp=n_ff_exp, n_ff_shexp=n_ff_shexp,
                expert_norm=norm)


def _swa_layers(meta: dict[str, Any], path: str, a: str, n_layer: int, window: int) -> tuple[bool, ...]:
    """Which layers slide their window, as llama.cpp's set_swa_pattern: sliding_window_pattern n
    (default 2 for gemma2 and gpt-oss, 4 for olmo2, 6 for gemma3) makes layer i local when i % n < n - 1 (n = 0: all),
    or the key is an array of per-layer flags."""
    if window == 0:
        return (False,) * n_layer
    key = f"{a}.attention.sliding_window_pattern"
    v = meta.get(key, {"gemma3": 6, "olmo2": 4}.get(a, 2))
    if isinstance(v, (list, np.ndarray)) and len(v) == n_layer:
        return tuple(bool(x) for x in v)
    n = _get(meta, path, key, int, 0, lo=0, hi=n_layer) if key in meta else v
    return tuple(n == 0 or i % n < n - 1 for i in range(n_layer))


# Read by llama.cpp for only a few architectures (grok, mistral3, deepseek2...), none of ours:
# for llama/qwen2/qwen3 it ignores them and uses these defaults. A file that sets another value
# would run differently from what its author meant, or from llama.cpp: refused.
_YARN_IGNORED = {"yarn_ext_factor": 1.0, "yarn_attn_factor": 1.0, "yarn_beta_fast": 32.0, "yarn_beta_slow": 1.0,
                 "yarn_log_multiplier": 0.0}


def _rope_scaling(meta: dict[str, Any], path: str, a: str, n_ctx: int, n_dims: int, base: float,
                  has_swa: bool) -> tuple[float, dict[str, Any]]:
    """The scaling factor (freq_scale = 1 / factor) and the YaRN fields, as llama.cpp derives them.

    none/linear/yarn are read; the absent type means linear (llama.cpp's default), which with no
    factor is plain RoPE. llama3 scaling has no type of its own: it is the rope_freqs tensor
    (service.model.weights), and so is phi3's longrope (its two factor tables; the type key, which
    the converter does not write, may say longrope, which llama.cpp then treats as linear). Any
    other type is refused, and so is longrope for other architectures."""
    key = f"{a}.rope.scaling.type"
    kind = meta.get(key, "linear")
    kinds = ("none", "linear", "yarn") + (("longrope",) if a == "phi3" else ())
    if kind not in kinds:
        raise ModelError(f"{path}: {key}: unsupported rope scaling type {kind!r} for {a} (supported: "
                         f"{', '.join(kinds)})")
    factor = _get(meta, path, f"{a}.rope.scaling.factor", float, 0.0, lo=0.0, hi=1e6)
    factor = 1.0 if factor == 0.0 or kind == "none" else factor  # llama.cpp: 0 or none means unscaled
    attn = _get(meta, path, f"{a}.rope.scaling.attn_factor", float, 1.0, lo=1e-6, hi=1e6)
    f32 = np.float32
    out = {"rope_attn_factor": float(f32(attn))}
    if a == "phi3":  # llama.cpp applies attn_factor to cos and sin here as for any type but yarn
        out["rope_n_orig"] = _get(meta, path, f"{a}.rope.scaling.original_context_length", int, n_ctx, lo=1,
                                  hi=MAX_CTX)
    if kind != "yarn":
        return factor, out
    if has_swa:
        raise ModelError(f"{path}: {key}: yarn on a model with sliding-window layers is not supported")
    if has_swa and attn != 1.0:
        raise ModelError(f"{path}: {a}.rope.scaling.attn_factor: {attn} on a model with sliding-window layers "
                         f"is not supported")
    for name, default in _YARN_IGNORED.items():
        k = f"{a}.rope.scaling.{name}"
        if k in meta and _get(meta, path, k, float) != default:
            raise ModelError(f"{path}: {k}: {meta[k]} is not supported (llama.cpp ignores it for {a} "
                             f"and uses {default})")
    n_orig = _get(meta, path, f"{a}.rope.scaling.original_context_length", int, n_ctx, lo=1, hi=MAX_CTX)
    # llama.cpp: attn_factor = get_mscale(factor) / (1 + 0.1 ln factor) * rope.scaling.attn_factor,
    # with get_mscale(s) = 1 + 0.1 ln s for s > 1 (else 1); ggml multiplies 1 + 0.1 ln(1/freq_scale) back.
    fac = f32(factor)
    mscale = f32(1.0) if fac <= 1 else f32(0.1) * np.log(fac) + f32(1.0)
    mscale = mscale * (f32(1.0) / (f32(1.0) + f32(0.1) * np.log(fac))) * f32(attn)
    from kernels.rope import yarn_corr_dims

    out.update(rope_ext_factor=1.0, rope_attn_factor=float(mscale),
               rope_corr_dims=yarn_corr_dims(n_dims, n_orig, base, 32.0, 1.0))
    return factor, out
