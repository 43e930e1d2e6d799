"""logit_bias in llama-server's forms, read by the HTTP edge (service/api/protocol.py) and resolved
(service/sampling/bias.py) with the real SmolLM2 tokenizer.

Expected token ids for text come from llama.cpp's own tokenizer (the shared reference file),
so a string bias is checked against what llama-server would bias.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from service.api.errors import ApiError
from service.api.protocol import CompletionRequest, decode, logit_bias_pairs
from service.gguf_reader import read_gguf
from service.sampling import Sampler, SamplingParams
from service.sampling.bias import resolve_logit_bias
from service.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
REF = [json.loads(s) for s in (ROOT.parent / "shared" / "reference" / "smollm2_tokenize.jsonl").read_text().splitlines()]
N = 49152


def _ref_ids(text):
    return next(r["ids"] for r in REF if r["text"] == text and not r["add_special"] and not r["parse_special"])


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_metadata(read_gguf(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").metadata)


def bias(value, tok):
    """logit_bias as a request sends it: decoded at the edge, read into pairs, then resolved."""
    req = decode(json.dumps({"logit_bias": value}).encode(), CompletionRequest)
    return resolve_logit_bias(logit_bias_pairs(req.logit_bias) if req.logit_bias is not None else [], tok, N)


def test_token_id_pairs_and_false(tok):
    assert bias([[15, 2.5], [7, -1], [3, False]], tok) == ((15, 2.5), (7, -1.0), (3, -math.inf))
    assert bias(None, tok) == ()
    assert bias([], tok) == ()


def test_out_of_range_ids_are_dropped(tok):
    assert bias([[N, 1.0], [-1, 1.0], [10**12, 1.0], [5, 1.0]], tok) == ((5, 1.0),)
    assert bias({str(N): 1.0, "-3": 1.0, "6": 2}, tok) == ((6, 2.0),)


def test_string_bias_applies_to_every_token_without_special_tokens(tok):
    ids = _ref_ids("Hello world")
    assert len(ids) == 2
    assert bias([["Hello world", -3]], tok) == tuple((t, -3.0) for t in ids)
    # control-token text is plain text here: llama-server tokenizes with parse_special=false
    chat = "<|im_start|>user\nhi<|im_end|>"
    got = bias([[chat, False]], tok)
    assert [t for t, _ in got] == _ref_ids(chat)
    assert 2 not in [t for t, _ in got] and all(b == -math.inf for _, b in got)


def test_openai_object_form(tok):
    ids = _ref_ids("Hello world")
    got = bias({"15": 1.5, " 16": -2, "+17": 0.5, "Hello world": False}, tok)
    assert got == ((15, 1.5), (16, -2.0), (17, 0.5), *((t, -math.inf) for t in ids))
    # not an integer to strtol's end: text
    assert bias({"15a": 1}, tok) == tuple((t, 1.0) for t in tok.tokenize("15a", add_special=False))


@pytest.mark.parametrize("bad", [
    5, "abc", True, [[1]], [[1, 2, 3]], [1, 2], [[1, "x"]], [[1, True]], [[1.5, 1.0]], [[None, 1.0]],
    {"1": "x"}, {"1": True}, {"1": None}, [[1, 10**400]],
])
def test_wrong_types_raise_naming_logit_bias(tok, bad):
    with pytest.raises(ApiError, match="logit_bias"):
        bias(bad, tok)


@pytest.mark.parametrize("b", [float("nan"), float("inf")])  # not JSON, but checked where they are used
def test_nan_and_inf_bias_are_refused(tok, b):
    with pytest.raises(ValueError, match="logit_bias"):
        resolve_logit_bias([(1, b)], tok, N)


def test_resolved_bias_drives_the_sampler(tok):
    x = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    top = int(np.argmax(x))
    greedy = SamplingParams(temperature=0.0, seed=1)
    assert Sampler(greedy, N).sample(x) == top
    banned = SamplingParams(temperature=0.0, seed=1, logit_bias=bias({str(top): False}, tok))
    assert Sampler(banned, N).sample(x) not in (top,)
    boosted = bias([["Hello world", 100.0]], tok)
    tok_ = Sampler(SamplingParams(temperature=0.0, seed=1, logit_bias=boosted), N).sample(x)
    assert tok_ in _ref_ids("Hello world")
