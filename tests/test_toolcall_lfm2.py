"""service/chat/toolcall_lfm2.py: LFM2's Python-style calls beyond llama.cpp's fixtures (literals,
streaming argument by argument, malformed output) and the grammar that forces them."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_lfm2 import END, START
from tests.chat_vocab import accepts

F = ToolFormat.LFM2
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}


def _calls(msg) -> list:
    return [(c.name, json.loads(c.arguments)) for c in msg.tool_calls]


def test_detected_in_both_generations():
    assert detect("<|tool_list_start|>{{ tools }}<|tool_list_end|>", tools=True, choice_none=False, schema=False) is F
    assert detect("List of tools: [{{ tools }}]", tools=True, choice_none=False, schema=False) is F


def test_python_literals_become_json():
    text = START + "[f(a='it\\'s', b=-2.5, c=(1, 2), d={'k': [None, False]}, e=\"x, y)\")]" + END
    assert _calls(final_message(OutputSpec(F), text)) == [
        ("f", {"a": "it's", "b": -2.5, "c": [1, 2], "d": {"k": [None, False]}, "e": "x, y)"})]


def test_streamed_argument_by_argument():
    out = OutputStream(OutputSpec(F))
    assert [d.content for d in out.feed("Sure <|tool_call_st")] == ["Sure"]
    assert out.feed("art|>[get_wea") == []
    deltas = out.feed('ther(city="Par')
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "get_weather", "{")]
    assert [d.tool_args for d in out.feed('is", days=1')] == ['"city":"Paris"']
    deltas = out.feed("2), ping(")  # the first call closes, the second opens
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "", ',"days":12}'), (1, "ping", "{")]
    msg, last = out.finish(out.text + ")]" + END)
    assert _calls(msg) == [("get_weather", {"city": "Paris", "days": 12}), ("ping", {})]
    assert [(d.tool_index, d.tool_args) for d in last if d.tool_index >= 0] == [(1, "}")]


@pytest.mark.parametrize("text", [
    START + "[ping(",  # cut off
    START + "[ping(a=open('x'))]" + END,  # no literal
    START + "[ping(1)]" + END,  # positional
    START + "[ping()]" + END + " more",
    START + "ping()" + END,  # no list
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(F), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_a_call_list():
    one = START + '[get_weather(city="Oslo", days=3)]' + END
    assert accepts(F, [WEATHER, PING], one, required=True)
    assert not accepts(F, [WEATHER, PING], "Hello", required=True)
    assert not accepts(F, [WEATHER, PING], START + '[get_weather(city=3)]' + END, required=True)
    assert not accepts(F, [WEATHER, PING], START + '[get_weather(town="x")]' + END, required=True)
    two = START + "[ping(), ping()]" + END
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], "Let me check. " + one)
