"""service/chat/toolcall_kimi.py: Kimi K2's calls beyond llama.cpp's fixtures (streamed prefixes,
malformed output, the ids the model numbers), and the grammar that forces them."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.reasoning import ThinkTags
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_kimi import ARGS, CALL, END, SECTION, SECTION_END, parse
from tests.chat_vocab import accepts

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
KIMI = ThinkTags(ends=(SECTION, CALL))


def _call(name: str, n: int, args: str) -> str:
    return f"{CALL}functions.{name}:{n}{ARGS}{args}{END}"


def test_detected_from_the_template_markers():
    src = "{{ '<|tool_calls_section_begin|>' }}<|tool_call_begin|>"
    assert detect(src, tools=True, choice_none=False, schema=False) is ToolFormat.KIMI_K2


def test_streaming_announces_a_call_once_its_id_is_complete():
    out = OutputStream(OutputSpec(ToolFormat.KIMI_K2, tags=KIMI))
    assert [d.content for d in out.feed("Checking.<|tool_calls_sec")] == ["Checking."]
    assert out.feed(f"tion_begin|>{CALL}functions.get_weather:1") == []  # the counter may still grow
    deltas = out.feed(f'2{ARGS}{{"city": "Pa')
    assert [(d.tool_index, d.tool_name, d.tool_id, d.tool_args) for d in deltas] == [
        (0, "get_weather", "functions.get_weather:12", '{"city":"Pa')]
    assert [d.tool_args for d in out.feed('ris"}')] == ['ris"}']
    msg, last = out.finish(out.text + END + SECTION_END)
    assert last == [] and msg.content == "Checking." and msg.tool_calls[0].id == "functions.get_weather:12"


def test_partial_arguments_as_llama_cpp_streams_them():
    content, calls = parse(f'{SECTION}{CALL}functions.special_function:0{ARGS}{{"arg1": ', partial=True)
    assert content == "" and [(c.name, c.arguments, c.id) for c in calls] == [
        ("special_function", '{"arg1":', "functions.special_function:0")]


@pytest.mark.parametrize("text", [
    f'{SECTION}{CALL}functions.ping:0{ARGS}{{"a": ',  # cut off
    f"{SECTION}{CALL}functions.ping:0{ARGS}[1]{END}",  # arguments that are no object
    f"{SECTION}{CALL}functions.ping:0{ARGS}{{}}{END} and then words",
    f"{SECTION}{SECTION_END}",  # a section without calls
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(ToolFormat.KIMI_K2, tags=KIMI), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_thoughts_end_where_a_call_starts():
    msg = final_message(OutputSpec(ToolFormat.KIMI_K2, tags=KIMI), "<think>Need the weather" + _call("ping", 0, "{}"))
    assert msg.reasoning_content == "Need the weather" and [c.name for c in msg.tool_calls] == ["ping"]


def test_grammar_forces_numbered_calls_of_the_tools():
    one = SECTION + _call("get_weather", 0, '{"city": "Paris"}') + SECTION_END
    assert accepts(ToolFormat.KIMI_K2, [WEATHER, PING], one, required=True)
    assert not accepts(ToolFormat.KIMI_K2, [WEATHER, PING], "Hello", required=True)
    assert not accepts(ToolFormat.KIMI_K2, [WEATHER, PING], SECTION + _call("get_weather", 0, '{"town": "x"}'),
                       required=True)
    two = SECTION + _call("ping", 0, "{}") + _call("get_weather", 1, json.dumps({"city": "Rome"})) + SECTION_END
    assert not accepts(ToolFormat.KIMI_K2, [WEATHER, PING], two, required=True)
    assert accepts(ToolFormat.KIMI_K2, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(ToolFormat.KIMI_K2, [WEATHER, PING], "Let me see. " + two, parallel=True)  # lazy: text first


def test_grammar_allows_no_unlisted_arguments():
    # llama.cpp's schema converter closes objects; a small model given the choice wanders off
    call = SECTION + _call("get_weather", 0, '{"city": "Paris", "temperature": 3}')
    assert not accepts(ToolFormat.KIMI_K2, [WEATHER], call, required=True)
