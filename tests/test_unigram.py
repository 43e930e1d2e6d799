"""Unigram (service/tokenizer/unigram.py) against llama.cpp's /tokenize on the XLM-RoBERTa-like
vocabulary of tests/unigram_model.py (80 SentencePiece pieces, the nmt_nfkc charsmap): fullwidth
letters and circled digits normalized, runs of spaces merged, a user-defined token kept whole,
unknown characters merged into one [unk] (tests/fixtures/encoders_llamacpp.json); and the steps."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tests import unigram_model


@lru_cache(maxsize=1)
def _tok(d: str):
    from service.gguf_reader import read_gguf
    from service.tokenizer import Tokenizer

    return Tokenizer.from_metadata(read_gguf(unigram_model.write(Path(d))).metadata)


def test_tokens_match_llamacpp(tmp_path):
    want = json.loads((Path(__file__).with_name("fixtures") / "encoders_llamacpp.json").read_text())
    tok = _tok(str(tmp_path))
    for text, ids in want["xlmr-rank"]["rerank"]["tokens"].items():
        assert tok.tokenize(text, add_special=True) == ids, text


def test_normalization_and_unknowns(tmp_path):
    tok = _tok(str(tmp_path))
    ugm = tok._ugm
    # NFKC through the charsmap; spaces escaped, merged, one in front (add_space_prefix)
    assert ugm.normalize("  Ｆｕｌｌ   ①") == "▁Full▁1".encode()
    assert ugm.normalize("<mask>x") == "▁<mask>x".encode()  # a user-defined token is not normalized
    unk = tok.unk_id
    assert tok.tokenize("✓✓ hello", add_special=False) == [tok.token_id("▁"), unk, tok.token_id("▁hello")]
    assert tok.tokenize("", add_special=True) == [tok.bos_id, tok.eos_id]
