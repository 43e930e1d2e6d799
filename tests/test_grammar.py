"""Structured output on a tiny byte-level vocabulary (105 tokens): masks, Constraint, errors, StructuredOutput.

The Sampler with a constraint is in tests/test_sampling_grammar.py (same vocabulary).

The vocabulary is every printable ASCII character and newline, a control BOS and EOS, and
a few merged tokens ("yes", "no", '{"', '":', ...), so every mask can be checked token by
token against a plain-Python oracle of the language.
"""

import json
import re

import jsonschema
import numpy as np
import pytest

from service.sampling import (
    GrammarCompiler,
    GrammarError,
    StructuredOutput,
    compile_structured,
    fill_masks,
)
from service.tokenizer import Tokenizer
from service.tokenizer.detok import gpt2_byte_table

_B = gpt2_byte_table()
_MERGES = [("y", "e"), ("ye", "s"), ("n", "o"), ("{", '"'), ('"', ":"), (_B[0x20], '"'), (":", _B[0x20])]
_TOKENS = ["<|bos|>", "<|eos|>"] + [_B[b] for b in [0x0A, *range(0x20, 0x7F)]] + [a + b for a, b in _MERGES]
EOS = 1
YES_NO = 'root ::= answer ("," answer)*\nanswer ::= "yes" | "no"'


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_metadata({
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": _TOKENS,
        "tokenizer.ggml.merges": [f"{a} {b}" for a, b in _MERGES],
        "tokenizer.ggml.token_type": [3, 3] + [1] * (len(_TOKENS) - 2),
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": EOS,
    })


@pytest.fixture(scope="module")
def compiler(tok):
    return GrammarCompiler(tok)


def _allowed(c, n):
    return {t for t in range(n) if c.allows(t)}


def _yes_no_viable(s):
    parts = s.split(",")
    return all(p in ("yes", "no") for p in parts[:-1]) and any(w.startswith(parts[-1]) for w in ("yes", "no"))


def _yes_no_complete(s):
    return all(p in ("yes", "no") for p in s.split(","))


# -- masks against an oracle ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_gbnf_mask_is_exactly_the_viable_tokens(tok, compiler, seed):
    rng = np.random.default_rng(seed)
    c = compiler.compile(grammar=YES_NO)
    text = ""
    for _ in range(200):
        allowed = _allowed(c, tok.n_vocab)
        expect = {t for t in range(2, tok.n_vocab) if _yes_no_viable(text + tok.token_to_piece(t).decode())}
        if _yes_no_complete(text):
            expect.add(EOS)
        assert allowed == expect, text
        if EOS in allowed and rng.random() < 0.3:
            c.accept(EOS)
            break
        t = int(rng.choice(sorted(allowed - {EOS})))
        c.accept(t)
        text += tok.token_to_piece(t).decode()
    assert _yes_no_complete(text)


SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"enum": ["yes", "no", "maybe"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 99},
        "who": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 6}, "ok": {"type": "boolean"}},
            "required": ["name", "ok"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["answer", "score", "who", "tags"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", range(12))
def test_json_schema_random_walks_always_validate(tok, compiler, seed):
    rng = np.random.default_rng(seed)
    c = compiler.compile(json_schema=SCHEMA)
    ids = []
    for _ in range(400):
        allowed = sorted(_allowed(c, tok.n_vocab))
        assert 0 not in allowed  # control tokens never come from grammar text
        if EOS in allowed and (len(allowed) == 1 or rng.random() < 0.5):
            c.accept(EOS)
            break
        t = int(rng.choice([a for a in allowed if a != EOS]))
        if rng.random() < 0.2:  # a token outside the mask is refused by a copy of the state
            bad = next((u for u in rng.permutation(tok.n_vocab) if u not in allowed), None)
            if bad is not None:
                with pytest.raises(RuntimeError, match="rejected"):
                    c.clone().accept(int(bad))
        c.accept(t)
        ids.append(t)
    assert c.is_finished
    doc = json.loads(tok.detokenize(ids))
    jsonschema.validate(doc, SCHEMA)


def test_empty_schema_means_any_object(tok, compiler):
    c = compiler.compile(json_schema={})
    assert c.allows(tok.token_id("{")) and not c.allows(tok.token_id("[")) and not c.allows(tok.token_id("1"))


def test_lark_grammar_passes_through(tok, compiler):
    c = compiler.compile(grammar="%llguidance {}\nstart: /[0-9]{2}/")
    for ch in "42":
        assert _allowed(c, tok.n_vocab) == {tok.token_id(d) for d in "0123456789"}
        c.accept(tok.token_id(ch))
    assert c.is_finished and _allowed(c, tok.n_vocab) == {EOS}


# -- the Constraint object -----------------------------------------------------------------


def test_mask_computed_once_per_state_and_clone_is_independent(tok, compiler):
    c = compiler.compile(grammar=YES_NO)
    m1 = c.fill_mask().copy()
    c.fill_mask(), c.allows(5), c.allows(99)
    assert c.masks_computed == 1
    d = c.clone()
    c.accept(tok.token_id("yes"))
    assert c.masks_computed == 1 and not np.array_equal(c.fill_mask(), m1) and c.masks_computed == 2
    assert np.array_equal(d.fill_mask(), m1)  # the clone stayed at the start
    c.reset()
    assert np.array_equal(c.fill_mask(), m1)


def test_fill_masks_in_parallel_equals_one_by_one(tok, compiler):
    def states():
        cs = [compiler.compile(grammar=YES_NO), compiler.compile(json_schema=SCHEMA), compiler.compile(grammar=YES_NO)]
        cs[2].accept(tok.token_id("no"))
        return cs

    together, alone = states(), states()
    fill_masks(together)
    assert all(c.masks_computed == 1 for c in together)
    for a, b in zip(together, alone):
        assert np.array_equal(a.fill_mask(), b.fill_mask())
    assert all(c.masks_computed == 1 for c in together)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("grammar, message", [
    ('root ::= ("yes" | "no"', "Expected ')'"),
    ('root ::= "a" missing', "Rule 'missing' not found"),
    ('answer ::= "yes"', "No 'root' rule found"),
    ("root ::= [b-a]", "invalid character class range"),
    ('root ::= "a"{3,1}', "range end must be >= start"),
    ("", "No 'root' rule found"),
])
def test_invalid_grammar_raises_with_the_parser_message(compiler, grammar, message):
    with pytest.raises(GrammarError, match=re.escape(message)) as e:
        compiler.compile(grammar=grammar)
    assert e.value.field == "grammar" and str(e.value).startswith("grammar: ")
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("schema, message", [
    ({"type": "foo"}, "foo"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}, "nope"),
    ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum"),
    ([1, 2], "expected a JSON object"),
])
def test_invalid_schema_raises_with_the_parser_message(compiler, schema, message):
    with pytest.raises(GrammarError, match=message) as e:
        compiler.compile(json_schema=schema)
    assert e.value.field == "json_schema"


def test_compile_needs_exactly_one_source(compiler):
    with pytest.raises(ValueError):
        compiler.compile()
    with pytest.raises(ValueError):
        compiler.compile(grammar=YES_NO, json_schema={})


# -- StructuredOutput (the HTTP edge picks it by llama-server's rules: tests/test_protocol.py) --------


def _first_allowed(c, tok):
    return {tok.token_to_piece(t) for t in range(tok.n_vocab) if c.allows(t)}


def test_structured_output_compiles(tok, compiler):
    assert compile_structured(compiler, StructuredOutput(grammar=YES_NO)).field == "grammar"
    js = compile_structured(compiler, StructuredOutput(schema={"enum": ["no"]}, field="json_schema"))
    assert js.field == "json_schema" and _first_allowed(js, tok) == {b'"'}
    # an empty schema (response_format json_object without one) is any JSON object
    assert _first_allowed(compile_structured(compiler, StructuredOutput(schema={}, field="response_format")), tok) == {
        b"{", b'{"'}
    narrowed = compile_structured(compiler, StructuredOutput(schema={"enum": [7]}, field="response_format"))
    assert _first_allowed(narrowed, tok) == {b"7"}


@pytest.mark.parametrize("s, field, message", [
    (StructuredOutput(schema={"type": "foo"}, field="response_format"), "response_format", "foo"),
    (StructuredOutput(schema={"type": "foo"}, field="json_schema"), "json_schema", "foo"),
    (StructuredOutput(grammar="root ::= ("), "grammar", "Expected '\\)'"),
])
def test_structured_output_errors_name_the_field(compiler, s, field, message):
    with pytest.raises(GrammarError, match=message) as e:
        compile_structured(compiler, s)
    assert e.value.field == field

