"""service/chat/toolcall_glm.py: GLM 4.x calls beyond llama.cpp's fixtures (values typed by the
schema, streamed pair by pair, malformed output), and the grammar that forces them."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_glm import parse
from tests.chat_vocab import accepts

F = ToolFormat.GLM_4_5
EDIT = {"name": "edit", "parameters": {"type": "object", "properties": {
    "path": {"type": "string"}, "line": {"type": "integer"}, "opts": {"type": "object"},
    "note": {"type": ["string", "null"]}}, "required": ["path"]}}
SCHEMAS = {"edit": EDIT["parameters"]}


def _pair(k: str, v: str) -> str:
    return f"<arg_key>{k}</arg_key><arg_value>{v}</arg_value>"


def test_detected_from_the_argument_tags():
    src = "<tool_call>{{ name }}<arg_key>{{ k }}</arg_key><arg_value>{{ v }}</arg_value></tool_call>"
    assert detect(src, tools=True, choice_none=False, schema=False) is F
    assert detect(src + "<role>ASSISTANT</role>", tools=True, choice_none=False, schema=False) is not F


def test_values_follow_the_schema():
    text = "Editing.\n<tool_call>edit\n" + _pair("path", "42") + "\n" + _pair("line", "7") + _pair(
        "opts", '{"a": [1]}') + _pair("note", "null") + "\n</tool_call>"
    content, calls = parse(text, False, SCHEMAS)
    assert content == "Editing.\n" and json.loads(calls[0].arguments) == {
        "path": "42", "line": 7, "opts": {"a": [1]}, "note": None}


def test_streamed_pair_by_pair():
    out = OutputStream(OutputSpec(F, schemas=SCHEMAS))
    assert [d.content for d in out.feed("Sure <tool_")] == ["Sure"]
    assert out.feed("call>ed") == []  # the name may still grow
    deltas = out.feed("it<arg_key>path</arg_key><arg_value>a.py")
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "edit", "{")]
    assert [d.tool_args for d in out.feed("</arg_value>")] == ['"path":"a.py"']
    msg, last = out.finish(out.text + _pair("line", "3") + "</tool_call>")
    assert [d.tool_args for d in last if d.tool_index >= 0] == [',"line":3}'] and msg.content == "Sure "


@pytest.mark.parametrize("text", [
    "<tool_call>edit" + _pair("path", "a"),  # cut off
    "<tool_call>edit" + _pair("path", "a") + "</tool_call> and more",
    "<tool_call><arg_key>path</arg_key></tool_call>",  # no name
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_tagged_calls():
    call = "<tool_call>edit\n" + _pair("path", "a <b> c") + "\n" + _pair("line", "3") + "\n</tool_call>"
    assert accepts(F, [EDIT], call, required=True)
    assert not accepts(F, [EDIT], "Hello", required=True)
    assert not accepts(F, [EDIT], "<tool_call>edit" + _pair("line", "three") + "</tool_call>", required=True)
    assert not accepts(F, [EDIT], "<tool_call>drop" + _pair("path", "a") + "</tool_call>", required=True)
    assert not accepts(F, [EDIT], call + call, required=True)
    assert accepts(F, [EDIT], call + call, required=True, parallel=True)
    assert accepts(F, [EDIT], "Let me edit it. " + call)  # lazy: free text first


def test_grammar_keeps_enum_values_and_closed_objects():
    pick = {"name": "pick", "parameters": {"type": "object", "properties": {
        "unit": {"enum": ["C", "F"]}, "opts": {"type": "object", "properties": {"a": {"type": "integer"}}}}}}
    assert accepts(F, [pick], "<tool_call>pick" + _pair("unit", "F") + _pair("opts", '{"a": 1}') + "</tool_call>",
                   required=True)
    assert not accepts(F, [pick], "<tool_call>pick" + _pair("unit", "Kelvin") + "</tool_call>", required=True)
    assert not accepts(F, [pick], "<tool_call>pick" + _pair("opts", '{"b": 1}') + "</tool_call>", required=True)
