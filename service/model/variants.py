"""What the newer decoder families change in the common config, read from their GGUF keys as
llama.cpp's own loaders do (src/models/<arch>.cpp): granite, olmo2, smollm3 and gpt-oss.

service.model.config reads what every architecture shares; particulars() then sets the fields
that only these families use. A key that llama.cpp reads and we do not implement is refused
with an error naming it, as everywhere in the loader.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from service.model.config import ModelConfig, ModelError, _get

# SmolLM3 leaves RoPE out of every 4th layer; llama.cpp hard-codes the step (no key is read).
SMOLLM3_NOPE_STEP = 4


def particulars(cfg: ModelConfig, meta: dict[str, Any], path: str) -> ModelConfig:
    read = _READERS.get(cfg.arch)
    return dataclasses.replace(cfg, **read(cfg, meta, path)) if read else cfg


def _granite(c: ModelConfig, meta: dict[str, Any], path: str) -> dict[str, Any]:
    """Granite's four multipliers: the embeddings times embedding_scale, each block's output times
    residual_scale, attention scores times attention.scale (instead of 1 / sqrt(head_dim)), the
    logits divided by logit_scale (the one llama.cpp requires). An absent or zero optional scale
    is llama.cpp's 'off'. rope.scaling.finetuned false turns RoPE off in every layer."""
    a = "granite"
    f32 = np.float32
    logit = _get(meta, path, f"{a}.logit_scale", float, lo=1e-30, hi=1e30)
    residual = _get(meta, path, f"{a}.residual_scale", float, 0.0, lo=-1e30, hi=1e30)
    embd = _get(meta, path, f"{a}.embedding_scale", float, 0.0, lo=-1e30, hi=1e30)
    attn = _get(meta, path, f"{a}.attention.scale", float, 0.0, lo=-1e30, hi=1e30)
    if "granite.deepstack_mapping" in meta:  # Granite 4 Vision's projector streams into decoder layers
        raise ModelError(f"{path}: {a}.deepstack_mapping: deepstack layers (Granite Vision) are not supported")
    rope = meta.get(f"{a}.rope.scaling.finetuned", True)
    return dict(logit_scale=float(f32(1.0) / f32(logit)), residual_scale=residual or 1.0,
                embd_scale=embd or 1.0, attn_scale=attn or c.attn_scale,
                nope_layers=() if rope else (True,) * c.n_layer)


def _smollm3(c: ModelConfig, meta: dict[str, Any], path: str) -> dict[str, Any]:
    """Layers 3, 7, 11, ... (il + 1 a multiple of 4) attend without RoPE."""
    return dict(nope_layers=tuple((i + 1) % SMOLLM3_NOPE_STEP == 0 for i in range(c.n_layer)))


def _olmo2(c: ModelConfig, meta: dict[str, Any], path: str) -> dict[str, Any]:
    """OLMo 2: no norm before attention or the FFN, an RMSNorm after each (post_attention_norm,
    post_ffw_norm); Q and K normed over the whole projection (n_head * head_dim wide), not per head.
    OLMo 3 (sliding_window > 0): its sliding-window layers rotate with their own base (freq_base_swa,
    default the global one) and neither the scaling factor nor YaRN; the global layers keep both."""
    swa = {}
    if c.sliding_window:
        swa = dict(rope_base_swa=_get(meta, path, "olmo2.rope.freq_base_swa", float, c.rope_base, lo=1e-3, hi=1e12),
                   rope_scale_swa=1.0)
    if c.head_dim * c.n_head != c.n_embd:  # llama.cpp sizes Q and its norm by n_embd
        raise ModelError(f"{path}: olmo2.attention.key_length: {c.head_dim} x {c.n_head} heads != "
                         f"embedding_length {c.n_embd}")
    return dict(pre_norms=False, post_norms=True, qk_norm=True, qk_norm_full=True, **swa)


def _gpt_oss(c: ModelConfig, meta: dict[str, Any], path: str) -> dict[str, Any]:
    """gpt-oss: biases on Q, K, V and the output projection; a sink logit per head; the sliding
    window on even layers (pattern 2), with the same RoPE (YaRN included) as the global layers;
    experts chosen on the router's raw (biased) logits, weighted by a softmax over the chosen,
    with biases and the clamped SwiGLU. Its post_attention_norm is the FFN's pre-norm."""
    a = "gpt-oss"
    base_swa = _get(meta, path, f"{a}.rope.freq_base_swa", float, c.rope_base, lo=1e-3, hi=1e12)
    if base_swa != c.rope_base:  # YaRN's ramp depends on the base: one table serves both kinds here
        raise ModelError(f"{path}: {a}.rope.freq_base_swa: {base_swa} != rope.freq_base {c.rope_base} is not "
                         f"supported")
    if c.rope_dims != c.head_dim:
        raise ModelError(f"{path}: {a}.rope.dimension_count: {c.rope_dims} != key_length {c.head_dim} is not "
                         f"supported")
    return dict(qkv_bias=True, attn_out_bias=True, attn_sinks=True, swa_own_rope=False,
                attn_scale=1.0 / math.sqrt(c.rope_dims), expert_gating="softmax_weight", expert_bias=True,
                expert_act="swiglu_oai")


_READERS = {"granite": _granite, "smollm3": _smollm3, "olmo2": _olmo2, "gpt-oss": _gpt_oss}


def cpu_only(c: ModelConfig) -> str:
    """Why this model's layers cannot run on the GPU ('' when they can): the particulars that have
    no CUDA path yet. An explicit -ngl is refused with it; -ngl auto keeps every layer on the CPU."""
    if c.n_expert:
        return "mixture-of-experts layers have no CUDA kernels yet"
    what = [name for name, on in (
        ("granite's residual and logit scales", c.residual_scale != 1.0 or c.logit_scale != 1.0),
        ("layers without RoPE", any(c.nope_layers)),
        ("norms after the blocks only", not c.pre_norms),
        ("Q/K norms over the whole projection", c.qk_norm_full),
        ("attention sinks", c.attn_sinks)) if on]
    return f"{c.arch}'s {' and '.join(what)} have no CUDA path yet" if what else ""
