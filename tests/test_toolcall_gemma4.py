"""service/chat/toolcall_gemma4.py: Gemma 4's channels and calls beyond llama.cpp's fixtures (streaming,
several thoughts, calls without tools, malformed output) and the grammar that forces its calls."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.reasoning import ReasoningFormat
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_gemma4 import QUOTE
from tests.chat_vocab import accepts

F = ToolFormat.GEMMA_4
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["C", "F"]}}, "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
TOOLS = {"get_weather": WEATHER["parameters"], "ping": PING["parameters"]}


def _call(name: str, args: str) -> str:
    return f"<|tool_call>call:{name}{args}<tool_call|>"


def test_detected_from_the_call_prefix():
    assert detect("{{- '<|tool_call>call:' + name -}}", tools=False, choice_none=False, schema=False) is F


def test_thoughts_anywhere_and_calls():
    text = f"<|channel>thought\nFirst.<channel|>Sure.<|channel>thought\nSecond.<channel|>" + _call(
        "get_weather", f"{{city:{QUOTE}Oslo, NO{QUOTE},days:3}}")
    msg = final_message(OutputSpec(F, schemas=TOOLS), text)
    assert (msg.reasoning_content, msg.content) == ("First.Second.", "Sure.")
    assert [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == [("get_weather", {"city": "Oslo, NO", "days": 3})]


def test_streamed_call_arrives_whole_when_its_dict_closes():
    out = OutputStream(OutputSpec(F, schemas=TOOLS))
    assert [d.reasoning for d in out.feed("<|channel>thought\nHmm<chan")] == ["Hmm"]
    assert [d.content for d in out.feed("nel|>Ok <|tool_")] == ["Ok "]
    deltas = out.feed(f"call>call:get_weather{{city:{QUOTE}Pa")
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "get_weather", "")]
    assert out.feed(f"ris{QUOTE},days:1") == []  # the number may still grow
    assert [d.tool_args for d in out.feed("2}")] == ['{"city":"Paris","days":12}']
    msg, last = out.finish(out.text + "<tool_call|>")
    assert msg.content == "Ok " and [d.tool_args for d in last if d.tool_index >= 0] == []


def test_reasoning_none_keeps_the_channel_in_content():
    text = "<|channel>thought\nHmm<channel|>Hi"
    msg = final_message(OutputSpec(F, reasoning=ReasoningFormat.NONE), text)
    assert (msg.content, msg.reasoning_content) == (text, "")


@pytest.mark.parametrize("text,tools", [
    (_call("ping", "{a:"), True),  # cut off
    (_call("ping", "{a:nope}"), True),  # no value
    (_call("ping", "{}"), False),  # a call with no tools offered
    ("<|tool_call>ping{}<tool_call|>", True),  # no call: prefix
])
def test_malformed_calls_are_content(text, tools):
    msg = final_message(OutputSpec(F, schemas=TOOLS if tools else None), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_typed_calls():
    one = _call("get_weather", f"{{city:{QUOTE}Oslo{QUOTE},days:3,unit:{QUOTE}C{QUOTE}}}")
    assert accepts(F, [WEATHER, PING], one, required=True)
    assert accepts(F, [WEATHER, PING], "<|channel>thought\nLet me see.<channel|>" + one, required=True)
    assert not accepts(F, [WEATHER, PING], "Hello", required=True)
    assert not accepts(F, [WEATHER, PING], _call("get_weather", "{days:3.5}"), required=True)
    assert not accepts(F, [WEATHER, PING], _call("get_weather", f"{{unit:{QUOTE}K{QUOTE}}}"), required=True)
    two = _call("ping", "{}") + _call("ping", "{}")
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], "Let me check. " + one)
