"""service/chat/toolcall_minicpm5.py: MiniCPM5's `<function>`/`<param>` calls, values typed by the
schema or wrapped in CDATA, streamed and malformed, and the grammar that forces them."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.toolcall_formats import ToolFormat, detect
from tests.chat_vocab import accepts

F = ToolFormat.MINICPM5
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
SCHEMAS = {"get_weather": WEATHER["parameters"], "ping": PING["parameters"]}
CALL = '<function name="get_weather"><param name="city">42</param><param name="days">3</param></function>'


def test_detected_by_its_guidelines():
    src = 'Tool usage guidelines: <function name="f"><param name="p">v</param></function>'
    assert detect(src, tools=True, choice_none=False, schema=False) is F


def test_values_by_the_schema_and_cdata():
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), "Sure." + CALL.replace(">42<", "><![CDATA[a</param>b]]><"))
    assert msg.content == "Sure." and json.loads(msg.tool_calls[0].arguments) == {"city": "a</param>b", "days": 3}


def test_streamed_calls_never_show_in_content():
    out, text = OutputStream(OutputSpec(F, schemas=SCHEMAS)), "Sure. " + CALL + "\n" + CALL.replace("42", "Oslo")
    deltas = [d for i in range(0, len(text), 3) for d in out.feed(text[i:i + 3])]
    assert "".join(d.content for d in deltas) == "Sure."
    assert [(d.tool_index, d.tool_name) for d in deltas if d.tool_name] == [(0, "get_weather"), (1, "get_weather")]
    msg, _ = out.finish(text)
    assert [json.loads(c.arguments)["city"] for c in msg.tool_calls] == ["42", "Oslo"]


@pytest.mark.parametrize("text", [
    CALL[:-15],  # cut off
    CALL.replace(">3<", ">three<"),  # not an integer
    CALL + " more",
    CALL.replace(">42<", "><![CDATA[a]]>b<"),  # text after the CDATA block
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_calls():
    assert accepts(F, [WEATHER, PING], CALL, required=True)
    assert accepts(F, [WEATHER, PING], CALL.replace(">42<", "><![CDATA[a</param>b]]><"), required=True)
    assert not accepts(F, [WEATHER, PING], "Hello", required=True)
    assert not accepts(F, [WEATHER, PING], CALL.replace(">3<", ">three<"), required=True)
    two = CALL + '\n<function name="ping"></function>'
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], "Let me see. " + CALL)
