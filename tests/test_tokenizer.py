"""Tokenizer parity with llama.cpp (../shared/reference/*_tokenize.jsonl) and its own invariants."""

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.tokenizer import Tokenizer
from tests.real_models import MODELS, meta, tok
from service.tokenizer.bpe import split_words
from service.tokenizer.detok import _clean_spaces, gpt2_byte_table

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT.parent / "shared" / "reference"


def ref_cases():
    for name in MODELS:
        for i, line in enumerate((REF / f"{name}_tokenize.jsonl").read_text().splitlines()):
            yield pytest.param(name, json.loads(line), id=f"{name}-{i}")


@pytest.mark.parametrize("name,ref", list(ref_cases()))
def test_matches_llama_cpp(name, ref):
    got = tok(name).tokenize(ref["text"], ref["add_special"], ref["parse_special"])
    assert got == ref["ids"]


ORDINARY = [
    "Hello world", " Hello  world ", "\t tabs\tand   spaces\n\n", "naïve café résumé",
    "日本語のテキスト", "Привет, мир", "emoji 🤗🚀👍🏽 and 🇫🇷", "def f(x):\n    return x ** 2\n",
    "1234567890 3.14159", "A\u00a0non-breaking\u2003em space", "\u200bzero\u200dwidth\ufeff",
]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("text", ORDINARY)
def test_round_trip(name, text):
    t = tok(name)
    assert t.detokenize(t.tokenize(text, add_special=False)) == text
    # The added BOS disappears with remove_special, or stays as text when rendered.
    ids = t.tokenize(text, add_special=True)
    assert t.detokenize(ids, remove_special=True) == text


def test_special_tokens_render_only_when_asked():
    t = tok("smollm2")
    ids = t.tokenize("<|im_start|>user\nhi<|im_end|>", add_special=False, parse_special=True)
    assert ids[0] == 1 and ids[-1] == 2
    assert t.detokenize(ids) == "<|im_start|>user\nhi<|im_end|>"
    assert t.detokenize(ids, skip_special=True) == "user\nhi"
    assert t.token_to_piece(2) == b"<|im_end|>" and t.token_to_piece(2, special=False) == b""
    g = tok("gemma3")
    assert g.token_to_piece(g.token_id("▁Hello")) == b" Hello"
    assert g.token_to_piece(g.token_id("<0x0A>")) == b"\n"
    assert g.token_to_piece(g.token_id("  ")) == b"  "  # user-defined: verbatim


@pytest.mark.parametrize("name", MODELS)
def test_stream_decoder_holds_split_characters(name):
    t = tok(name)
    text = "Rocket 🚀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓"
    ids = t.tokenize(text, add_special=False)
    # At least one character must arrive in pieces for the test to mean anything.
    assert any(t.token_to_piece(i).decode("utf-8", "replace") != t.token_to_piece(i).decode(
        "utf-8", "ignore") for i in ids)
    dec = t.stream_decoder()
    chunks = [dec.feed(i) for i in ids]
    chunks.append(dec.flush())
    assert all("\ufffd" not in c for c in chunks)
    assert "" in chunks[:-1]  # something was held back
    assert "".join(chunks) == text


def test_stream_decoder_replaces_only_hopeless_bytes():
    g = tok("gemma3")
    dec = g.stream_decoder()
    first = dec.feed(g.token_id("<0xF0>"))
    assert first == "" and dec.pending == b"\xf0"
    assert dec.feed(g.token_id("▁ok")) == "\ufffd ok"  # the lead byte can never complete now
    assert dec.flush() == ""


def test_eog_sets():
    s = tok("smollm2")
    # eos <|im_end|>, <|endoftext|> by text, <reponame> as the FIM repo token.
    assert s.eog_ids == {0, 2, 4}
    assert (s.bos_id, s.eos_id, s.add_bos, s.add_eos, s.vocab_type) == (1, 2, False, False, "bpe")
    assert s.fim_rep_id == 4 and s.fim_pre_id is None
    assert s.is_eog(2) and not s.is_eog(1) and s.is_control(1)
    g = tok("gemma3")
    # <eos>, <end_of_turn> (also the EOT id), and </s> by text.
    assert g.eog_ids == {1, 106, 212}
    assert (g.bos_id, g.eos_id, g.eot_id, g.add_bos, g.vocab_type) == (2, 1, 106, True, "spm")
    assert g.n_vocab == 262144 and g.is_unused(g.token_id("<unused0>"))
    assert g.is_user_defined(g.token_id("\n\n")) and g.is_byte(g.token_id("<0x41>"))


@pytest.mark.parametrize("name", MODELS)
def test_long_text(name):
    t = tok(name)
    unit = ("The quick brown fox jumps over the lazy dog; 12345 naïve cafés.\n"
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n")
    text = (unit * (200_000 // len(unit) + 1))[:200_000]
    ids = t.tokenize(text, add_special=False, parse_special=True)
    assert t.detokenize(ids) == text
    head = t.tokenize(unit * 3, add_special=False, parse_special=True)
    assert ids[:len(head) - 2] == head[:-2]  # the cut at the end of `head` may merge differently


def _synthetic(pre: str) -> dict:
    """A byte-level vocabulary: the 256 byte characters plus a few merges of digits."""
    chars = list(gpt2_byte_table().values())
    tokens = ["<|endoftext|>", *chars, "12", "123", "45"]
    return {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array([3] + [1] * (len(tokens) - 1), np.int32),
        "tokenizer.ggml.merges": ["1 2", "12 3", "4 5"],
        "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 0,
    }


def test_llama3_and_qwen2_digit_splits():
    assert split_words("llama3", "x 1234567") == ["x", " ", "123", "456", "7"]
    assert split_words("qwen2", "x 1234567") == ["x", " ", *"1234567"]
    assert split_words("starcoder", "ab 12") == ["ab", " ", "1", "2"]
    l3 = Tokenizer.from_metadata(_synthetic("llama3"))
    q2 = Tokenizer.from_metadata(_synthetic("qwen2"))
    ids = {t: i for i, t in enumerate(_synthetic("llama3")["tokenizer.ggml.tokens"])}
    assert l3.add_bos and not q2.add_bos  # llama3 pre-tokenizer implies a BOS
    assert l3.tokenize("12345", add_special=False) == [ids["123"], ids["45"]]
    assert q2.tokenize("12345", add_special=False) == [ids[c] for c in "12345"]
    assert l3.detokenize(l3.tokenize("12345 <|endoftext|>", parse_special=True)) == (
        "<|endoftext|>12345 <|endoftext|>")


def test_unsupported_model_or_pre():
    with pytest.raises(ValueError, match="tokenizer model"):
        Tokenizer.from_metadata({**_synthetic("llama3"), "tokenizer.ggml.model": "rwkv"})
    with pytest.raises(ValueError, match="pre-tokenizer"):
        Tokenizer.from_metadata(_synthetic("no-such-pre"))


def test_space_prefix_for_spm():
    g = tok("gemma3")
    gp = Tokenizer.from_metadata({**meta("gemma3"), "tokenizer.ggml.add_space_prefix": True})
    assert gp.tokenize("Hello", add_special=False) == g.tokenize(" Hello", add_special=False)
    # Every text fragment after a special token gets the prefix too.
    got = gp.tokenize("<start_of_turn>user", add_special=False, parse_special=True)
    assert got == [105, *g.tokenize(" user", add_special=False)]  # 105: <start_of_turn>
    assert gp.detokenize(gp.tokenize("Hello", add_special=False)) == "Hello"


def test_clean_spaces():
    assert _clean_spaces(bytearray(b"Hi , you ! ok . yes ?")) == b"Hi, you! ok. yes?"
    assert _clean_spaces(bytearray(b"it ' s")) == b"it's"
    assert _clean_spaces(bytearray(b"I 'm we 're they 've don 't")) == b"I'm we're they've don 't"


# -- splitting: the `tokenizers` regexes against a direct port of llama.cpp's hand-written
#    gpt2/llama3 splitters ----------------------------------------------------------------

_WS = {*range(9, 14), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
       0x205F, 0x3000}


def _flags(s, i):
    if i >= len(s):
        return (False, False, False, False)  # out of range: no flags at all
    c = unicodedata.category(s[i])
    return (True, ord(s[i]) in _WS, c[0] == "L", c[0] == "N")


def _port_split(s, llama3):
    out, pos, n = [], 0, len(s)
    W = lambda i: _flags(s, i)[1]  # noqa: E731
    L = lambda i: _flags(s, i)[2]  # noqa: E731
    N = lambda i: _flags(s, i)[3]  # noqa: E731
    other = lambda i: i < n and not (W(i) or L(i) or N(i))  # noqa: E731
    while pos < n:
        start, c = pos, s[pos]
        low = (lambda x: x.lower()) if llama3 else (lambda x: x)
        if c == "'" and pos + 1 < n and low(s[pos + 1]) in "stmd":
            pos += 2
        elif c == "'" and pos + 2 < n and low(s[pos + 1:pos + 3]) in ("re", "ve", "ll"):
            pos += 3
        elif llama3 and not (c in "\r\n" or N(pos)) and (L(pos) or L(pos + 1)):
            pos += 1
            while L(pos):
                pos += 1
        elif llama3 and N(pos):
            while N(pos) and pos - start < 3:
                pos += 1
        elif not llama3 and (L(pos + (c == " ")) or N(pos + (c == " "))):
            kind = L if L(pos + (c == " ")) else N
            pos += c == " "
            while kind(pos):
                pos += 1
        elif other(pos + (c == " ")) or (llama3 and c == " " and pos + 1 == n):
            pos += c == " "
            while other(pos):
                pos += 1
            while llama3 and pos < n and s[pos] in "\r\n":
                pos += 1
        else:
            k, last_nl = 0, 0
            while W(pos + k):
                if s[pos + k] in "\r\n":
                    last_nl = pos + k + 1
                k += 1
            if llama3 and last_nl:
                pos = last_nl
            elif k > 1 and pos + k < n:
                pos += k - 1
            else:
                pos += max(k, 1)
        out.append(s[start:pos])
    return out


_ALPHABET = (" \t\n\r\x0b\x0cabcdelmorstvxyzDLMRSTV019'.,!?-_()<>/éßñ中文日本٣²Ⅻ\u0301\u00a0"
             "\u2003\u3000\u0085🤗👍🏽\u200bǅʰ")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_regex_split_matches_llama_cpp_splitters(text):
    assert split_words("gpt2", text) == _port_split(text, llama3=False)
    assert split_words("llama3", text) == _port_split(text, llama3=True)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="▁ab>c</de中文字\n", max_size=300))
def test_spm_chunking_is_exact(text):
    """Cutting at '▁' and at impossible pairs gives what merging the whole text gives."""
    spm = tok("gemma3")._spm
    whole = spm._merge(text) if text else []
    assert spm.encode(text) == whole
    assert [i for c in spm._cut_pairs(text) if c for i in spm._merge(c)] == whole
