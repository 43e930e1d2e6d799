"""The typed request layer (service/api/protocol*.py) without a server: decoding rules, the
structured-output rules, the chat conversion, and the Anthropic and Responses conversions into a
chat request. The same rules are driven through real servers in tests/test_http_errors.py."""

from __future__ import annotations

import math

import msgspec
import pytest

from service.api.errors import ApiError
from service.api.protocol import (CompletionRequest, DetokenizeRequest, InfillRequest, Int, TokenizeRequest, decode,
                                  logit_bias_pairs)
from service.api.protocol_openai import ChatRequest, CompletionsRequest, chat_input
from service.chat.reasoning import ReasoningFormat
from service.chat.tools import ToolChoice
from service.sampling import StructuredOutput

YES_NO = 'root ::= "yes" | "no"'
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def dec(body: dict, kind=CompletionRequest):
    return decode(msgspec.json.encode(body), kind)


def error(body, kind=CompletionRequest) -> str:
    with pytest.raises(ApiError) as e:
        dec(body, kind) if isinstance(body, dict) else decode(body, kind)
    assert e.value.code == 400 and e.value.type == "invalid_request_error"
    return e.value.message


# -- decoding ---------------------------------------------------------------------------------------

def test_integral_numbers_are_integers():
    r = dec({"n_predict": 40.0, "top_k": 5, "seed": 7.0, "id_slot": -1.0})
    assert (r.n_predict, r.top_k, r.seed, r.id_slot) == (40, 5, 7, -1)
    assert all(type(v) is int for v in (r.n_predict, r.top_k, r.seed, r.id_slot))
    assert isinstance(3, Int) and not isinstance(3.0, Int) and not isinstance(True, Int)


@pytest.mark.parametrize("body, says", [
    ({"n_predict": 40.5}, "n_predict: Expected `int`, got `float`"),
    ({"n_predict": "40"}, "n_predict: Expected `int`, got `str`"),
    ({"n_predict": True}, "n_predict: Expected `int`, got `bool`"),
    ({"temperature": "0.5"}, "temperature: Expected `float | null`, got `str`"),
    ({"stop": [1]}, "stop[0]: Expected `str`, got `int`"),
    ({"response_format": {"type": "sound"}}, "response_format.type: Invalid enum value 'sound'"),
    ({"logit_bias": [[1]]}, "logit_bias[0]: Expected `array` of length 2"),
])
def test_wrong_types_name_the_field(body, says):
    assert error(body) == says


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"null", b"{", b"\xff"])
def test_a_body_that_is_not_one_object(raw):
    assert error(raw)


def test_null_is_the_default_and_unknown_fields_are_ignored():
    r = dec({"cache_prompt": None, "stream": None, "id_slot": None, "t_max_predict_ms": None, "nonsense": [1]})
    # cache_prompt: None defers to the server's --cache-prompt / --no-cache-prompt
    assert (r.cache_prompt, r.stream, r.id_slot, r.t_max_predict_ms) == (None, False, -1, 0.0)
    assert dec({"input_extra": None}, InfillRequest).input_extra == []
    t = dec({"content": "x", "add_special": None, "parse_special": None}, TokenizeRequest)
    assert (t.add_special, t.parse_special, t.with_pieces) == (False, True, False)
    assert dec({}, DetokenizeRequest).tokens == [] and decode(b"", DetokenizeRequest).tokens == []
    assert error({}, TokenizeRequest) == "Object missing required field `content`"


def test_stops_drop_empty_strings():
    assert dec({"stop": "x"}).stops() == ("x",) and dec({"stop": ["", "a", "b"]}).stops() == ("a", "b")
    assert dec({}).stops() == ()


# -- structured output: which field wins (llama-server's rules) ---------------------------------------

def spec(body: dict, chat: bool) -> StructuredOutput | None:
    return dec(body, ChatRequest if chat else CompletionRequest).structured(chat)


@pytest.mark.parametrize("chat", [False, True])
def test_no_constraint(chat):
    assert spec({}, chat) is None and spec({"grammar": ""}, chat) is None
    assert spec({"response_format": {"type": "text"}}, chat) is None


def test_completion_rules():
    assert spec({"grammar": YES_NO}, False) == StructuredOutput(grammar=YES_NO)
    assert spec({"json_schema": SCHEMA}, False) == StructuredOutput(schema=SCHEMA, field="json_schema")
    # a grammar field wins over json_schema, even an empty one
    assert spec({"grammar": YES_NO, "json_schema": SCHEMA}, False) == StructuredOutput(grammar=YES_NO)
    assert spec({"grammar": "", "json_schema": SCHEMA}, False) is None


def test_response_format():
    assert spec({"response_format": {"type": "json_object"}}, True) == StructuredOutput(schema={}, field="response_format")
    assert spec({"response_format": {"type": "json_object", "schema": SCHEMA}}, True).schema == SCHEMA
    named = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    assert spec({"response_format": named}, True) == StructuredOutput(schema=SCHEMA, field="response_format")
    assert spec({"response_format": {"type": "json_schema"}}, True).schema == {}
    # response_format replaces a json_schema field
    assert spec({"json_schema": {"enum": [3]}, "response_format": {"type": "json_object"}}, True).schema == {}
    assert spec({"json_schema": {"enum": [3]}}, True) == StructuredOutput(schema={"enum": [3]}, field="json_schema")


@pytest.mark.parametrize("body, says", [
    ({"grammar": YES_NO, "json_schema": {}}, "not both"),
    ({"grammar": YES_NO, "response_format": {"type": "json_object"}}, "not both"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": "x"}}}, "response_format.json_schema.schema"),
    ({"grammar": 5}, "grammar"),
    ({"json_schema": "{}"}, "json_schema"),
])
def test_structured_errors_name_the_field(body, says):
    with pytest.raises(ApiError, match=says) as e:
        spec(body, True)
    assert e.value.code == 400


# -- logit_bias forms ---------------------------------------------------------------------------------

def test_logit_bias_pairs():
    assert logit_bias_pairs([(15, 2.5), ("Hi", False)]) == [(15, 2.5), ("Hi", -math.inf)]
    # OpenAI's object: a key strtol reads whole is a token id, anything else text
    assert logit_bias_pairs({"15": 1, " 16": -2.0, "+17": 0.5, "15a": 1, "x": False}) == [
        (15, 1.0), (16, -2.0), (17, 0.5), ("15a", 1.0), ("x", -math.inf)]
    with pytest.raises(ApiError, match="logit_bias"):
        logit_bias_pairs([(1, True)])


# -- the OpenAI fields ---------------------------------------------------------------------------------

def test_openai_limits_and_logprobs():
    # llama-server's order: n_predict, then its aliases max_completion_tokens and max_tokens
    assert dec({"max_completion_tokens": 3, "max_tokens": 5, "n_predict": 7}, ChatRequest).limit() == 7
    assert dec({"max_tokens": 5, "max_completion_tokens": 3}, ChatRequest).limit() == 3
    assert dec({"max_tokens": 5}, CompletionRequest).limit() == 5 and dec({}, ChatRequest).limit() is None
    assert dec({"logprobs": True, "top_logprobs": 3}, ChatRequest).logprob_counts() == (3, 3)
    assert dec({"logprobs": True}, ChatRequest).logprob_counts() == (0, 1)
    assert dec({"logprobs": 4}, CompletionsRequest).logprob_counts() == (4, 4)
    for body in ({"top_logprobs": 2}, {"logprobs": True, "top_logprobs": 21}):
        with pytest.raises(ApiError, match="top_logprobs"):
            dec(body, ChatRequest).logprob_counts()
    for n in (0, 17):
        with pytest.raises(ApiError, match="n: must be in"):
            dec({"n": n}, ChatRequest).n_choices()
    assert dec({"stream_options": {"include_usage": True}}, ChatRequest).include_usage


def test_chat_input():
    tools = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}, {"function": {"name": "g"}}]
    inp = chat_input(dec({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": "required",
                          "reasoning_format": "none", "chat_template_kwargs": {"enable_thinking": False},
                          "add_generation_prompt": False, "response_format": {"type": "json_object"}}, ChatRequest))
    assert inp.messages == [{"role": "user", "content": "hi"}] and inp.tools.tools == tools
    assert inp.tools.choice is ToolChoice.REQUIRED and [f["name"] for f in inp.tools.functions] == ["f", "g"]
    assert inp.tools.functions[1]["parameters"] == {"type": "object", "properties": {}}
    assert inp.reasoning_format is ReasoningFormat.NONE and inp.template_kwargs == {"enable_thinking": False}
    assert not inp.add_generation_prompt and inp.response_schema == {} and not inp.has_grammar
    with pytest.raises(ApiError, match="reasoning_format"):
        chat_input(dec({"messages": [{"role": "user", "content": "hi"}], "reasoning_format": "loud"}, ChatRequest))
    with pytest.raises(ApiError, match="messages"):
        chat_input(dec({"messages": []}, ChatRequest))
