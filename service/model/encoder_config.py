"""The hyper-parameters of the encoders (service.model.encoder) as llama.cpp reads them, and the
tasks an encoder refuses as llama-server does."""

from __future__ import annotations

import math
from typing import Any

from service.model.config import ModelConfig, ModelError, _check_vocab, _get

ENCODERS = ("bert", "nomic-bert", "jina-bert-v2")
# ALiBi instead of positions (jina-bert-v2): llama.cpp's fixed maximum bias, whatever the file says
ALIBI_MAX_BIAS = {"jina-bert-v2": 8.0}


def encoder_config(meta: dict[str, Any], path: str) -> ModelConfig:
    """The hyper-parameters llama.cpp reads for an encoder file; the decoder-only fields get neutral values."""
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


def refusal(n_prompt: int, embd: bool, max_batch: int) -> str | None:
    """llama-server's error for a task an encoder cannot run, or None: a completion (no logits
    without a KV cache) or a prompt larger than one batch (it cannot be split)."""
    if not embd:
        return "the current context does not support logits computation. skipping"
    if n_prompt > max_batch:
        return (f"input ({n_prompt} tokens) is too large to process. increase the physical batch size "
                f"(current batch size: {max_batch})")
    return None
