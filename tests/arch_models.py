"""Tiny synthetic models of the architectures checked against llama.cpp (beyond the ones the
real reference models cover), shared by tests/fixtures/record_archs.py and tests/test_archs.py.

Each case: a tests.synthetic Spec and metadata overrides, written with gguf.GGUFWriter from a
fixed seed (the fixture keeps the file's sha256).
"""

from __future__ import annotations

from pathlib import Path

from gguf import GGMLQuantizationType as T

from tests.synthetic import Spec, write_model

N_VOCAB = 72

CASES = {
    # Phi-3: fused attn_qkv, ffn_up holding [gate; up], NeoX RoPE; the sliding_window key that
    # llama.cpp turns off (and so do we).
    "phi3": (Spec("phi3", n_embd=96, n_ff=128, n_head=3, n_head_kv=3, tied=False, eps=1e-5, n_vocab=N_VOCAB,
                  seed=21), {"phi3.attention.sliding_window": 8}),
    # Phi-4-mini's shape: grouped KV heads, partial rotary (3/4 of each head).
    "phi3-gqa": (Spec("phi3", n_embd=128, n_ff=96, n_head=4, n_head_kv=2, tied=False, eps=1e-5, n_vocab=N_VOCAB,
                      seed=22), {"phi3.rope.dimension_count": 24, "phi3.attention.sliding_window": 0}),
    # Gemma 2: sliding window on even layers (pattern 2), attention and final soft-capping made
    # small enough to bite, post-norms, GELU, embeddings times sqrt(n_embd), tied head.
    "gemma2": (Spec("gemma2", n_layer=4, n_embd=64, n_ff=96, n_head=2, n_head_kv=1, head_dim=32, sliding_window=4,
                    n_vocab=N_VOCAB, seed=31),
               {"gemma2.attn_logit_softcapping": 2.0, "gemma2.final_logit_softcapping": 8.0}),
    # Gemma 2 as converted without the optional keys: llama.cpp's defaults (caps 50 and 30,
    # window 4096).
    "gemma2-defaults": (Spec("gemma2", n_layer=2, n_embd=64, n_ff=96, n_head=4, n_head_kv=2, n_vocab=N_VOCAB,
                             seed=32), {}),
    # Qwen3 (before: only against our own NumPy oracle): per-head Q/K RMSNorm, head_dim 32 apart
    # from n_embd / n_head, NeoX RoPE at base 1e6.
    "qwen3": (Spec("qwen3", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, head_dim=32, tied=False, rope_base=1e6,
                   n_vocab=N_VOCAB, seed=41), {}),
    # Mixtures of experts: 4 experts, 2 per token. qwen3moe: qwen3's attention, softmax routing with
    # the two weights renormalised to sum 1, experts 64 wide (expert_feed_forward_length).
    "qwen3moe": (Spec("qwen3moe", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, head_dim=32, tied=False, rope_base=1e6,
                      n_expert=4, n_expert_used=2, n_ff_exp=64, n_vocab=N_VOCAB, seed=51), {}),
    # The same with quantized experts (each expert's slice of the 3-D tensor packed on its own).
    "qwen3moe-quant": (Spec("qwen3moe", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, head_dim=32, tied=False,
                            rope_base=1e6, n_expert=4, n_expert_used=2, n_ff_exp=64, n_vocab=N_VOCAB, seed=52,
                            types=dict(ffn_gate=T.Q8_0, ffn_up=T.Q4_0, ffn_down=T.Q5_0)), {}),
    # qwen2moe: qwen2's Q/K/V biases, weights not renormalised, a shared expert 96 wide behind a
    # sigmoid gate (ffn_gate_inp_shexp, stored (n_embd, 1) as the converter writes it).
    "qwen2moe": (Spec("qwen2moe", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, tied=False, rope_base=1e6, n_expert=4,
                      n_expert_used=2, n_ff_exp=64, n_ff_shexp=96, n_vocab=N_VOCAB, seed=53), {}),
    # Mixtral-style llama: expert_count on a llama file, experts n_ff wide, normal (not NeoX) RoPE.
    "mixtral": (Spec("llama", n_embd=64, n_ff=64, n_head=4, n_head_kv=2, tied=False, eps=1e-5, n_expert=4,
                     n_expert_used=2, n_vocab=N_VOCAB, seed=54), {}),
    # Granite: its four multipliers away from 1 (embeddings x3, each block's output x0.5, attention
    # scores x1/16 in place of 1/sqrt(16), logits / 2), normal (not NeoX) RoPE.
    "granite": (Spec("granite", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, tied=False, eps=1e-5, n_vocab=N_VOCAB,
                     seed=61), {"granite.logit_scale": 2.0, "granite.residual_scale": 0.5,
                                "granite.embedding_scale": 3.0, "granite.attention.scale": 0.0625}),
    # OLMo 2: RMSNorm after attention and after the FFN only, Q/K normed over the whole projection, NeoX RoPE.
    "olmo2": (Spec("olmo2", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, tied=False, rope_base=500000.0,
                   n_vocab=N_VOCAB, seed=62), {}),
    # OLMo 3 (olmo2 with a sliding window): 4 layers, the first 3 slide (window 4; the converter's per-layer
    # array), the last is global; YaRN (factor 4) on the global layer only.
    "olmo3": (Spec("olmo2", n_layer=4, n_embd=64, n_ff=96, n_head=4, n_head_kv=2, tied=False, rope_base=500000.0,
                   sliding_window=4, n_vocab=N_VOCAB, seed=66),
              {"olmo2.attention.sliding_window_pattern": [True, True, True, False], "olmo2.rope.scaling.type": "yarn",
               "olmo2.rope.scaling.factor": 4.0, "olmo2.rope.scaling.original_context_length": 64}),
    # SmolLM3: 4 layers, the last (il + 1 = 4) without RoPE; normal RoPE. (Its tied head here made one token
    # certain, logprobs of -20 and below, whose float32 rounding alone exceeds the bound: a separate head.)
    "smollm3": (Spec("smollm3", n_layer=4, n_embd=64, n_ff=96, n_head=4, n_head_kv=2, tied=False, rope_base=5e6,
                     n_vocab=N_VOCAB, seed=63), {}),
    # gpt-oss: Q/K/V/O biases, a sink logit per head, the window (4) on even layers with the global RoPE
    # (YaRN, factor 4 here), 4 experts of which 2 chosen on the router's biased logits and weighted by a
    # softmax over the 2, expert biases, the clamped SwiGLU; n_ff 96 is unused (llama.cpp reads it too).
    "gpt-oss": (Spec("gpt-oss", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, head_dim=32, tied=False, eps=1e-5,
                     rope_base=150000.0, sliding_window=4, n_expert=4, n_expert_used=2, n_ff_exp=64,
                     n_vocab=N_VOCAB, seed=64),
                {"gpt-oss.rope.scaling.type": "yarn", "gpt-oss.rope.scaling.factor": 4.0,
                 "gpt-oss.rope.scaling.original_context_length": 64}),
    # The same with MXFP4 experts, as gpt-oss ships them (llama.cpp's own converter keeps them MXFP4).
    "gpt-oss-mxfp4": (Spec("gpt-oss", n_embd=64, n_ff=96, n_head=4, n_head_kv=2, head_dim=32, tied=False, eps=1e-5,
                           rope_base=150000.0, sliding_window=4, n_expert=4, n_expert_used=2, n_ff_exp=64,
                           n_vocab=N_VOCAB, seed=65, types=dict(ffn_gate=T.MXFP4, ffn_up=T.MXFP4, ffn_down=T.MXFP4)),
                      {"gpt-oss.rope.scaling.type": "yarn", "gpt-oss.rope.scaling.factor": 4.0,
                       "gpt-oss.rope.scaling.original_context_length": 64}),
}


def write_case(d: Path, name: str) -> Path:
    spec, meta = CASES[name]
    return write_model(Path(d) / f"{name}.gguf", spec, meta=meta)
