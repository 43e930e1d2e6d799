"""service/chat/toolcall_ministral.py: Ministral 3 / Magistral / Devstral `[TOOL_CALLS]name[ARGS]{...}`
calls apart from Mistral's other spellings, streamed and malformed, and the grammar that forces them."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.toolcall_formats import ToolFormat, detect
from tests.chat_vocab import accepts

F = ToolFormat.MINISTRAL_3
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}


def _detect(source: str) -> ToolFormat:
    return detect(source, tools=True, choice_none=False, schema=False)


def test_detected_apart_from_mistral_small_and_nemo():
    assert _detect("[SYSTEM_PROMPT]{{ '[TOOL_CALLS]' + name + '[ARGS]' }}") is F
    assert _detect("[SYSTEM_PROMPT][TOOL_CALLS][ARGS][CALL_ID]") is ToolFormat.MISTRAL_NEMO  # Mistral Small 3.2
    assert _detect("[INST][TOOL_CALLS]") is ToolFormat.MISTRAL_NEMO


def test_text_then_calls_each_behind_its_marker():
    msg = final_message(OutputSpec(F), 'Checking.[TOOL_CALLS]ping[ARGS]{}\n[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}\n')
    assert msg.content == "Checking." and [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == [
        ("ping", {}), ("get_weather", {"city": "Oslo"})]
    assert all(c.id for c in msg.tool_calls) and len({c.id for c in msg.tool_calls}) == 2


def test_streamed_calls_never_show_in_content():
    out = OutputStream(OutputSpec(F))
    assert [d.content for d in out.feed("Sure [TOOL_")] == ["Sure"]
    assert out.feed("CALLS]get_wea") == []  # the name is not final before [ARGS]
    deltas = out.feed('ther[ARGS]{"city": "Os')
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "get_weather", '{"city":"Os')]
    more = out.feed('lo"}[TOOL_CALLS]ping[ARGS]{')  # the first call's end, then the second call
    assert [(d.tool_index, d.tool_name) for d in more if d.tool_name] == [(1, "ping")] and not "".join(
        d.content for d in more)
    msg, _ = out.finish(out.text + "}")
    assert msg.content == "Sure " and [c.name for c in msg.tool_calls] == ["get_weather", "ping"]


@pytest.mark.parametrize("text", [
    '[TOOL_CALLS]ping[ARGS]{"a": 1',  # cut off
    "[TOOL_CALLS]ping{}",  # no [ARGS]
    "[TOOL_CALLS]ping[ARGS][1]",  # not an object
    "[TOOL_CALLS]ping[ARGS]{} and more",
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(F), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_calls():
    one = '[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}'
    assert accepts(F, [WEATHER, PING], one, required=True)
    assert not accepts(F, [WEATHER, PING], "Hello", required=True)
    assert not accepts(F, [WEATHER, PING], '[TOOL_CALLS]get_weather[ARGS]{"town": "x"}', required=True)
    assert not accepts(F, [WEATHER, PING], '[TOOL_CALLS]delete[ARGS]{}', required=True)
    two = one + "[TOOL_CALLS]ping[ARGS]{}"
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], "Let me check. " + one)
