"""Structured output on the real models: generate() with constrained Samplers, outputs checked by json/jsonschema/regex.

SmolLM2 (49,152-token byte-level BPE) carries most of it; Gemma 3 (262,144-token
SentencePiece with byte fallback) is the smoke test for the harder tokenizer. Short outputs
(bounded strings, integers and arrays) keep every generation under ~60 tokens.
"""

import json
import re
from pathlib import Path

import jsonschema
import pytest

from service.model.generate import Stop, run_all
from service.model.model import Model
from service.sampling import GrammarCompiler, GrammarError, Sampler, SamplingParams, StructuredOutput, compile_structured

ROOT = Path(__file__).resolve().parent.parent
N_CTX = 512

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "pet": {
            "type": "object",
            "properties": {
                "kind": {"enum": ["cat", "dog", "fish"]},
                "age": {"type": "integer", "minimum": 0, "maximum": 30},
            },
            "required": ["kind", "age"],
            "additionalProperties": False,
        },
        "colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "pet", "colors"],
    "additionalProperties": False,
}
YES_NO = 'root ::= answer ("," " "? answer){0,4}\nanswer ::= "yes" | "no"'


@pytest.fixture(scope="module")
def smol():
    m = Model(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=N_CTX, n_seq=6, max_batch=64)
    return m, GrammarCompiler(m.tokenizer)


def _chat(tok, user):
    return tok.tokenize(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n", add_special=True, parse_special=True)


def _sampler(model, params, constraint=None):
    tok = model.tokenizer
    return Sampler(params, tok.n_vocab, eog_ids=tok.eog_ids, n_ctx=N_CTX, constraint=constraint)


def _run(model, prompts, samplers, n_predict):
    return run_all(model, prompts, n_predict, samplers)


def _text(tok, ids):
    return tok.detokenize([t for t in ids if not tok.is_eog(t)])


def test_json_schema_nested_objects_enums_arrays(smol):
    model, compiler = smol
    tok = model.tokenizer
    prompts = [
        _chat(tok, "Describe a person and their pet as JSON."),
        _chat(tok, "Give me JSON about Alice, who has a 3 year old cat and likes red."),
        _chat(tok, "Output a JSON object."),
    ]
    ps, samplers = [], []
    for seed in (1, 2):
        for p in prompts:
            ps.append(p)
            samplers.append(_sampler(model, SamplingParams(seed=seed), compiler.compile(json_schema=SCHEMA)))
    out, stops = _run(model, ps, samplers, 120)
    docs = []
    for i in range(len(ps)):
        assert stops[i] is Stop.EOS, _text(tok, out[i])
        doc = json.loads(_text(tok, out[i]))
        jsonschema.validate(doc, SCHEMA)
        docs.append(doc)
    assert samplers[0].constraint.is_finished
    assert len({json.dumps(d, sort_keys=True) for d in docs}) > 1  # seeds and prompts matter


def test_gbnf_yes_no_list_is_obeyed(smol):
    model, compiler = smol
    tok = model.tokenizer
    prompts = [_chat(tok, "Is the sky blue? Is fire cold? Answer each with yes or no."),
               _chat(tok, "Answer yes or no: do cats bark?")]
    cases = [(p, params) for p in prompts for params in (SamplingParams(temperature=0.0), SamplingParams(seed=4, temperature=1.2))]
    samplers = [_sampler(model, params, compiler.compile(grammar=YES_NO)) for _, params in cases]
    out, stops = _run(model, [p for p, _ in cases], samplers, 40)
    for i in range(len(cases)):
        text = _text(tok, out[i])
        assert re.fullmatch(r"(yes|no)(, ?(yes|no)){0,4}", text), text
        assert stops[i] is Stop.EOS


def test_response_format_json_object(smol):
    model, compiler = smol
    tok = model.tokenizer
    p = _chat(tok, "Reply with a small JSON object about the weather.")
    samplers = [_sampler(model, SamplingParams(seed=seed), compile_structured(
        compiler, StructuredOutput(schema={}, field="response_format"))) for seed in (8, 9, 10)]
    out, stops = _run(model, [p] * 3, samplers, 100)
    ended = [i for i in range(3) if stops[i] is Stop.EOS]
    assert ended  # an object with no schema may ramble on; most end well within 100 tokens
    for i in range(3):
        text = _text(tok, out[i])
        if i in ended:
            assert isinstance(json.loads(text), dict), text
        else:
            assert text.startswith("{")


def test_invalid_grammar_and_schema_on_the_real_tokenizer(smol):
    _, compiler = smol
    with pytest.raises(GrammarError, match=r"Expected '\)'"):
        compiler.compile(grammar='root ::= ("yes" | "no"')
    with pytest.raises(GrammarError, match="Rule 'maybe' not found"):
        compiler.compile(grammar="root ::= maybe")
    with pytest.raises(GrammarError, match="foo"):
        compiler.compile(json_schema={"type": "foo"})


def test_constrained_draws_do_not_depend_on_batch_neighbours(smol):
    model, compiler = smol
    tok = model.tokenizer
    a = _chat(tok, "Describe a person and their pet as JSON.")
    b = _chat(tok, "Write a short poem about the sea.")
    params = SamplingParams(seed=5, temperature=1.0)
    alone, _ = _run(model, [a], [_sampler(model, params, compiler.compile(json_schema=SCHEMA))], 60)
    together, _ = _run(model, [b, a, b], [
        _sampler(model, SamplingParams(seed=9)),
        _sampler(model, params, compiler.compile(json_schema=SCHEMA)),
        _sampler(model, SamplingParams(seed=10), compiler.compile(grammar=YES_NO)),
    ], 60)
    assert together[1] == alone[0]
    assert re.fullmatch(r"(yes|no)(, ?(yes|no)){0,4}", _text(tok, together[2]))


GEMMA_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Zürich", "東京", "São Paulo"]},
        "population": {"type": "integer", "minimum": 0, "maximum": 99999999},
        "mascot": {"enum": ["龘🦙"]},  # rare characters: spelled with byte-fallback tokens if need be
    },
    "required": ["city", "population", "mascot"],
    "additionalProperties": False,
}


def test_gemma3_json_schema_smoke():
    model = Model(ROOT / "models" / "gemma-3-270m-q4_k_m.gguf", n_ctx=256, n_seq=2, max_batch=64)
    tok = model.tokenizer
    compiler = GrammarCompiler(tok)
    p = tok.tokenize("<start_of_turn>user\nPick a city and answer in JSON.<end_of_turn>\n<start_of_turn>model\n",
                     add_special=True, parse_special=True)
    samplers = [Sampler(params, tok.n_vocab, eog_ids=tok.eog_ids, constraint=compiler.compile(json_schema=GEMMA_SCHEMA))
                for params in (SamplingParams(temperature=0.0), SamplingParams(seed=3))]
    out, stops = _run(model, [p, p], samplers, 80)
    for i in range(2):
        assert stops[i] is Stop.EOS, _text(tok, out[i])
        doc = json.loads(_text(tok, out[i]))
        jsonschema.validate(doc, GEMMA_SCHEMA)
        assert not any(tok.is_control(t) and not tok.is_eog(t) for t in out[i])
