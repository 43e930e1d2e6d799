"""Tiny random-weight encoder GGUFs (`bert`, `nomic-bert`, `jina-bert-v2`), written with gguf.GGUFWriter under the
tensor names and metadata llama.cpp's converter gives them, with a small WordPiece vocabulary in the
converter's phantom-space form ('▁word' starts a word, a bare piece continues one). Deterministic:
the same bytes every time (tests/fixtures/encoders_llamacpp.json keeps their sha256)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

E, H, FF, LAYERS, CTX = 64, 4, 128, 2, 128
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a cat dog sat on mat and ran to park is happy sad big small red blue fox jumps over lazy "
         "bird sings sun moon star sky tree water fire").split()
PIECES = list("abcdefghijklmnopqrstuvwxyz") + ["ing", "ed", "er"]
CASES = ("bert", "nomic-bert", "jina-bert-v2")
RANK = "bert-rank"  # a bert with a classification head (cls.*), pooling rank: a reranker
QUERY, DOCS = "the cat sat", ["a cat sat on the mat.", "the sun and the moon", "dogs ran to the park!", "cats sat"]
TEXTS = ["the cat sat on the mat.", "A big red fox jumps over the lazy dog!", "birds singing, trees and water",
         "the sun, the moon and the stars in the sky", "zebras?"]


def vocab() -> list[str]:
    toks = [*SPECIALS, *("\u2581" + w for w in WORDS), *("\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"),
            "\u2581.", "\u2581,", "\u2581!", "\u2581?", *PIECES]
    return list(dict.fromkeys(toks))  # '▁a' is a word and a letter: once


def write_case(d: Path, case: str, extra: dict | None = None) -> Path:
    """The tiny model `case` (CASES or RANK) in d; extra: more tensors (name -> float32 array) to add."""
    import gguf

    rng = np.random.default_rng({"bert": 1, "nomic-bert": 2, RANK: 3, "jina-bert-v2": 4}[case])
    arch = "bert" if case == RANK else case
    toks = vocab()
    path = d / f"tiny-{case}.gguf"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(LAYERS)
    w.add_context_length(CTX)
    w.add_embedding_length(E)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.RANK if case == RANK else gguf.PoolingType.MEAN)
    if arch == "nomic-bert":
        w.add_rope_freq_base(1000.0)
    w.add_token_type_count(2)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("jina-v2-en")
    w.add_token_list(toks)
    w.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in toks])
    for fn, name in ((w.add_pad_token_id, "[PAD]"), (w.add_unk_token_id, "[UNK]"), (w.add_bos_token_id, "[CLS]"),
                     (w.add_eos_token_id, "[SEP]"), (w.add_sep_token_id, "[SEP]"), (w.add_mask_token_id, "[MASK]")):
        fn(toks.index(name))
    w.add_bool("tokenizer.ggml.normalizer.lowercase", True)

    def t(name, *shape, scale=0.2, f16=False):  # shape in NumPy order (rows, row length)
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        w.add_tensor(name, a.astype(np.float16) if f16 else a)

    def norm(name):
        w.add_tensor(name + ".weight", (1 + 0.1 * rng.standard_normal(E)).astype(np.float32))
        w.add_tensor(name + ".bias", (0.1 * rng.standard_normal(E)).astype(np.float32))

    t("token_embd.weight", len(toks), E, scale=1.0, f16=True)
    t("token_types.weight", 2, E, scale=0.5)
    if arch == "bert":
        t("position_embd.weight", CTX, E, scale=0.5)
    norm("token_embd_norm")
    for i in range(LAYERS):
        p = f"blk.{i}."
        if arch != "nomic-bert":
            for x in "qkv":
                t(p + f"attn_{x}.weight", E, E, f16=True)
                t(p + f"attn_{x}.bias", E, scale=0.1)
        else:
            t(p + "attn_qkv.weight", 3 * E, E, f16=True)
        t(p + "attn_output.weight", E, E, f16=True)
        t(p + "attn_output.bias", E, scale=0.1)
        norm(p + "attn_output_norm")
        if arch == "jina-bert-v2" and i == 0:  # Q/K LayerNorms, [gate | up] in one matrix (GEGLU)
            norm(p + "attn_q_norm")
            norm(p + "attn_k_norm")
            t(p + "ffn_up.weight", 2 * FF, E, f16=True)
            t(p + "ffn_up.bias", 2 * FF, scale=0.1)
        else:
            t(p + "ffn_up.weight", FF, E, f16=True)
        if arch == "jina-bert-v2" and i == 1:  # a gate matrix of its own, the second post-attention norm
            norm(p + "attn_norm_2")
            t(p + "ffn_gate.weight", FF, E, f16=True)
        if arch == "bert":
            t(p + "ffn_up.bias", FF, scale=0.1)
        if arch != "nomic-bert":
            t(p + "ffn_down.bias", E, scale=0.1)
        else:
            t(p + "ffn_gate.weight", FF, E, f16=True)
        t(p + "ffn_down.weight", E, FF, scale=0.15, f16=True)
        norm(p + "layer_output_norm")
    if case == RANK:  # dense + tanh, then one score
        t("cls.weight", E, E, scale=0.3)
        t("cls.bias", E, scale=0.1)
        t("cls.output.weight", 1, E, scale=0.5)
        t("cls.output.bias", 1, scale=0.1)
    for name, a in (extra or {}).items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
