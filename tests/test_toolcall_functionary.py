"""service/chat/toolcall_functionary.py: Functionary v3.1 tags and v3.2 recipients beyond llama.cpp's
fixtures (several parts, streaming, a v3.2 answer without tools, malformed output) and their grammars."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.toolcall_formats import ToolFormat, detect
from tests.chat_sweep import TEMPLATES
from tests.chat_vocab import accepts

V31, V32 = ToolFormat.FUNCTIONARY_V3_1, ToolFormat.FUNCTIONARY_V3_2
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
TOOLS = {"get_weather": WEATHER["parameters"], "ping": PING["parameters"]}


def _calls(msg) -> list:
    return [(c.name, json.loads(c.arguments)) for c in msg.tool_calls]


def test_detected_before_llama_3():
    llama = "<|start_header_id|>ipython<|end_header_id|>"
    assert detect(llama, tools=True, choice_none=False, schema=False) is ToolFormat.LLAMA_3_X
    assert detect(llama + "<function=", tools=True, choice_none=False, schema=False) is V31
    assert detect(">>>all >>>${recipient}", tools=False, choice_none=False, schema=False) is V32
    if TEMPLATES.exists():  # the real templates, as llama.cpp tells them apart
        for name, fmt in (("meetkai-functionary-medium-v3.1.jinja", V31), ("meetkai-functionary-medium-v3.2.jinja", V32)):
            assert detect((TEMPLATES / name).read_text(), tools=True, choice_none=False, schema=False) is fmt


def test_v31_text_then_calls():
    msg = final_message(OutputSpec(V31, schemas=TOOLS), 'Checking.\n<function=ping>{}</function>\n'
                                                         '<function=get_weather>{"city": "Oslo"}</function>')
    assert msg.content == "Checking.\n" and _calls(msg) == [("ping", {}), ("get_weather", {"city": "Oslo"})]


def test_v32_parts_for_the_user_and_for_tools():
    text = 'all\nLet me look.>>>get_weather\n{"city": "Rome"}\n>>>ping\n{}'
    msg = final_message(OutputSpec(V32, schemas=TOOLS), text)
    assert msg.content == "Let me look." and _calls(msg) == [("get_weather", {"city": "Rome"}), ("ping", {})]


def test_v32_streams_without_recipients_in_content():
    out = OutputStream(OutputSpec(V32, schemas=TOOLS))
    assert out.feed("al") == [] and out.feed("l\n") == []
    assert [d.content for d in out.feed("Sure>>")] == ["Sure"]
    assert out.feed(">get_wea") == []  # the recipient's newline has not come
    deltas = out.feed('ther\n{"city": "Pa')
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "get_weather", '{"city":"Pa')]
    msg, _ = out.finish(out.text + 'ris"}')
    assert msg.content == "Sure" and _calls(msg) == [("get_weather", {"city": "Paris"})]


def test_v32_without_tools_reads_the_text_part():
    assert final_message(OutputSpec(V32), "all\nHi there").content == "Hi there"
    text = 'ping\n{"a": 1}'  # a call with no tools offered: the answer is kept as it is
    assert (final_message(OutputSpec(V32), text).content, final_message(OutputSpec(V32), text).tool_calls) == (text, [])


@pytest.mark.parametrize("fmt,text", [
    (V31, '<function=ping>{"a": </function>'),
    (V31, "<function=ping>{}</function> and more"),
    (V32, 'ping\n{"a": 1'),
    (V32, "ping\n[1]"),
    (V32, "ping\n{} trailing"),
])
def test_malformed_calls_are_content(fmt, text):
    msg = final_message(OutputSpec(fmt, schemas=TOOLS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammars_force_calls():
    assert accepts(V31, [WEATHER, PING], '<function=get_weather>{"city": "Oslo"}</function>', required=True)
    assert not accepts(V31, [WEATHER, PING], '<function=get_weather>{"town": "Oslo"}</function>', required=True)
    assert accepts(V31, [WEATHER, PING], "Sure. <function=ping>{}</function>")
    assert accepts(V32, [WEATHER, PING], 'get_weather\n{"city": "Oslo"}', required=True)
    assert not accepts(V32, [WEATHER, PING], "all\nHello", required=True)
    two = 'ping\n{}>>>get_weather\n{"city": "Oslo"}'
    assert not accepts(V32, [WEATHER, PING], two, required=True)
    assert accepts(V32, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(V32, [WEATHER, PING], 'all\nSure.>>>ping\n{}')
    assert not accepts(V32, [WEATHER, PING], 'all\nSure.>>>drop\n{}')
