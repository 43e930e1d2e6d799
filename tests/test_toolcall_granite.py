"""service/chat/toolcall_granite.py: Granite 3.x's `<|tool_call|>` lists (llama.cpp's fixtures have
none with a call), streamed and malformed, and the grammar that forces them."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.toolcall_formats import ToolFormat, detect
from tests.chat_vocab import accepts

F = ToolFormat.GRANITE
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}


def test_detected_apart_from_granite_4():
    assert detect("<|start_of_role|>{{ '<|tool_call|>' }}", tools=True, choice_none=False, schema=False) is F
    assert detect("<|start_of_role|><tool_call>", tools=True, choice_none=False, schema=False) is ToolFormat.HERMES_2_PRO


def test_text_then_a_list_of_calls():
    msg = final_message(OutputSpec(F), 'Checking.<|tool_call|>[{"name": "ping", "arguments": {}}, '
                                       '{"name": "get_weather", "arguments": {"city": "Oslo"}}]')
    assert msg.content == "Checking." and [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == [
        ("ping", {}), ("get_weather", {"city": "Oslo"})]


def test_streamed_calls_never_show_in_content():
    out = OutputStream(OutputSpec(F))
    assert [d.content for d in out.feed("Sure <|tool_")] == ["Sure"]
    assert out.feed('call|>[{"name": "get_wea') == []
    deltas = out.feed('ther", "arguments": {"city": "Os')
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "get_weather", '{"city":"Os')]
    msg, _ = out.finish(out.text + 'lo"}}]')
    assert msg.content == "Sure " and msg.tool_calls[0].arguments == '{"city":"Oslo"}'


@pytest.mark.parametrize("text", [
    '<|tool_call|>[{"name": "ping", "arguments": {}}',  # cut off
    '<|tool_call|>{"name": "ping", "arguments": {}}',  # no list
    '<|tool_call|>[{"arguments": {}}]',  # no name
    '<|tool_call|>[{"name": "ping", "arguments": {}}] more',
])
def test_malformed_lists_are_content(text):
    msg = final_message(OutputSpec(F), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_a_list():
    one = '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]'
    assert accepts(F, [WEATHER, PING], one, required=True)
    assert not accepts(F, [WEATHER, PING], "Hello", required=True)
    assert not accepts(F, [WEATHER, PING], '<|tool_call|>[{"name": "get_weather", "arguments": {"town": "x"}}]',
                       required=True)
    two = '<|tool_call|>[{"name": "ping", "arguments": {}}, {"name": "ping", "arguments": {}}]'
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], "Let me check. " + one)
