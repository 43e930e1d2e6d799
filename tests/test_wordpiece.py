"""WordPiece (service/tokenizer/wordpiece.py) against llama.cpp's /tokenize on all-MiniLM-L6-v2
(tests/fixtures/minilm_llamacpp.json: punctuation, accents, CJK, an emoji, digits, tabs), and the
pre-processing rules one by one on a small vocabulary."""

from __future__ import annotations

from service.tokenizer.wordpiece import WordPieceEncoder, words
from tests.minilm import model_path, rows


def test_minilm_tokens_match_llamacpp():
    from service.gguf_reader import read_gguf
    from service.tokenizer import Tokenizer

    tok = Tokenizer.from_metadata(read_gguf(model_path()).metadata)
    for r in rows("texts", "queries", "docs"):
        assert tok.tokenize(r["text"], add_special=True) == r["tokens"], r["text"]
    assert tok.tokenize("hi", add_special=False) == [7632]  # no [CLS] ... [SEP] without the specials


def test_words_split_as_llamacpp():
    # punctuation and ASCII symbols are words; U+001C..1F are controls (dropped), not separators
    assert words("a,b  c+d\x1ce", True, True) == ["a", ",", "b", "c", "+", "de"]
    # lowercase + strip_accents: NFD then combining marks dropped; a non-ASCII symbol stays in its word
    assert words("Café Ünïcode €5", True, True) == ["cafe", "unicode", "€5"]
    assert words("Café", False, False) == ["Café"]
    assert words("東京x", True, True) == ["東", "京", "x"]  # each ideograph alone
    assert words("İ", True, False) == ["i"]  # the simple lowercase mapping, one code point


def test_longest_match_and_unknown_words():
    vocab = {"[UNK]": 0, "▁un": 1, "▁unaff": 2, "able": 3, "aff": 4, "▁x": 5, "▁": 6}
    enc = WordPieceEncoder(vocab, 0, True, True)
    assert enc.encode_word("unaffable") == [2, 3]  # longest first piece wins
    assert enc.encode_word("unaffq") == [0]  # a word not covered to its end is one unknown token
    assert enc.encode("x Unaffable ?") == [5, 2, 3, 0]
    assert WordPieceEncoder(vocab, None, True, True).encode("q") == []
