"""A tiny XLM-RoBERTa-style reranker GGUF: a random `bert` with a classification head whose
tokenizer is Unigram (`t5`), as llama.cpp's converter writes XLM-RoBERTa ones. The vocabulary is
a SentencePiece unigram model of 80 pieces trained on a toy corpus (tests/fixtures/unigram_vocab.json:
<s> <pad> </s> <unk> control/unknown, <mask> user-defined), with SentencePiece's nmt_nfkc
precompiled charsmap (tests/fixtures/unigram_nmt_nfkc.bin.gz, the normalizer XLM-RoBERTa's own
files carry); tests/fixtures/record_unigram_vocab.py makes both."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from tests import encoder_models

FIX = Path(__file__).with_name("fixtures")
TEXTS = ["hello world", "  the   quick brown fox  ", "Ｆｕｌｌｗｉｄｔｈ ①②③ café", "naïve résumé <mask> query",
         "zebra ✓ 東京", "relevant passage answer question"]
QUERY, DOCS = "query hello", ["relevant passage answer", "the lazy dog", "hello world query", "①②③"]


def write(d: Path) -> Path:
    import gguf

    voc = json.loads((FIX / "unigram_vocab.json").read_text())["pieces"]
    charsmap = gzip.decompress((FIX / "unigram_nmt_nfkc.bin.gz").read_bytes())
    rng = np.random.default_rng(7)
    E, FF, CTX = encoder_models.E, encoder_models.FF, encoder_models.CTX
    path = d / "tiny-xlmr-rank.gguf"
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_block_count(1)
    w.add_context_length(CTX)
    w.add_embedding_length(E)
    w.add_feed_forward_length(FF)
    w.add_head_count(encoder_models.H)
    w.add_layer_norm_eps(1e-5)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.RANK)
    w.add_token_type_count(1)
    w.add_tokenizer_model("t5")
    w.add_tokenizer_pre("default")
    w.add_token_list([p for p, _, _ in voc])
    w.add_token_scores([s for _, s, _ in voc])
    # SentencePiece's piece types (1 normal, 2 unknown, 3 control, 4 user-defined) are gguf's
    w.add_token_types([t for _, _, t in voc])
    w.add_add_space_prefix(True)
    w.add_remove_extra_whitespaces(True)
    w.add_precompiled_charsmap(charsmap)
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)
    w.add_unk_token_id(3)
    w.add_sep_token_id(2)
    w.add_pad_token_id(1)
    w.add_mask_token_id(4)
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)

    def t(name, *shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def norm(name):
        w.add_tensor(name + ".weight", (1 + 0.1 * rng.standard_normal(E)).astype(np.float32))
        w.add_tensor(name + ".bias", (0.1 * rng.standard_normal(E)).astype(np.float32))

    t("token_embd.weight", len(voc), E, scale=1.0)
    t("token_types.weight", 1, E, scale=0.5)
    t("position_embd.weight", CTX, E, scale=0.5)
    norm("token_embd_norm")
    for x in "qkv":
        t(f"blk.0.attn_{x}.weight", E, E)
        t(f"blk.0.attn_{x}.bias", E, scale=0.1)
    t("blk.0.attn_output.weight", E, E)
    t("blk.0.attn_output.bias", E, scale=0.1)
    norm("blk.0.attn_output_norm")
    t("blk.0.ffn_up.weight", FF, E)
    t("blk.0.ffn_up.bias", FF, scale=0.1)
    t("blk.0.ffn_down.weight", E, FF, scale=0.15)
    t("blk.0.ffn_down.bias", E, scale=0.1)
    norm("blk.0.layer_output_norm")
    t("cls.weight", E, E, scale=0.3)
    t("cls.bias", E, scale=0.1)
    t("cls.output.weight", 1, E, scale=0.5)
    t("cls.output.bias", 1, scale=0.1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
