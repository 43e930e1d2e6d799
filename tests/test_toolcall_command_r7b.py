"""service/chat/toolcall_command_r7b.py: Command R7B's markers beyond llama.cpp's fixtures (ids as the
stream first sends them, several calls, an answer without tools, malformed output) and its grammar."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.reasoning import ThinkTags
from service.chat.toolcall_command_r7b import (
    ACTION,
    END_ACTION,
    END_THINK,
    THINK,
    parse,
)
from service.chat.toolcall_formats import ToolFormat, detect
from tests.chat_vocab import accepts

F = ToolFormat.COMMAND_R7B
TAGS = ThinkTags(THINK, END_THINK)
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
TOOLS = {"get_weather": WEATHER["parameters"], "ping": PING["parameters"]}


def _item(ident: str, name: str, params: dict) -> str:
    return json.dumps({"tool_call_id": ident, "tool_name": name, "parameters": params})


def test_detected_from_its_markers():
    src = "{{ '<|START_RESPONSE|>' }}<|START_ACTION|>"
    assert detect(src, tools=False, choice_none=False, schema=False) is F


def test_calls_keep_their_ids_and_the_stream_sends_them_first():
    text = f"{THINK}plan{END_THINK}{ACTION}[{_item('7', 'ping', {})}, {_item('8', 'get_weather', {'city': 'Oslo'})}]{END_ACTION}"
    msg = final_message(OutputSpec(F, tags=TAGS, schemas=TOOLS), text)
    assert msg.reasoning_content == "plan" and [(c.id, c.name) for c in msg.tool_calls] == [("7", "ping"), ("8", "get_weather")]
    out = OutputStream(OutputSpec(F, tags=TAGS, schemas=TOOLS))
    assert out.feed(f'{ACTION}[{{"tool_name": "ping", ') == []  # named, but its id may still come
    deltas = out.feed('"tool_call_id": "12", "parameters": {}}')
    assert [(d.tool_index, d.tool_name, d.tool_id) for d in deltas] == [(0, "ping", "12")]
    final, _ = out.finish(out.text + f"]{END_ACTION}")
    assert final.tool_calls[0].id == "12"


def test_partial_call_as_llama_cpp_streams_it():
    content, calls = parse(f'{ACTION}[\n    {{"tool_call_id": "0", "tool_name": "special_function", ', partial=True)
    assert content == "" and [(c.name, c.arguments, c.id) for c in calls] == [("special_function", "", "0")]


def test_text_around_the_markers_is_content():
    msg = final_message(OutputSpec(F, tags=TAGS), "<|START_RESPONSE|>Hi<|END_RESPONSE|>")
    assert (msg.content, msg.tool_calls) == ("Hi", [])
    assert parse("<|START_RESPONSE|>Hel", partial=True) == ("Hel", [])
    assert parse("Plain <|START_RESP", partial=True) == ("Plain ", [])


@pytest.mark.parametrize("text,tools", [
    (f"{ACTION}[{_item('0', 'ping', {})}", True),  # cut off
    (f"{ACTION}{_item('0', 'ping', {})}{END_ACTION}", True),  # no array
    (f"{ACTION}[{_item('0', 'ping', {})}] junk", True),
    (f"{ACTION}[{_item('0', 'ping', {})}]{END_ACTION}", False),  # an action with no tools offered
])
def test_malformed_actions_are_content(text, tools):
    msg = final_message(OutputSpec(F, tags=TAGS, schemas=TOOLS if tools else None), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_an_action_after_optional_thoughts():
    one = f"{ACTION}[{_item('0', 'get_weather', {'city': 'Oslo'})}]{END_ACTION}"
    assert accepts(F, [WEATHER, PING], one, required=True)
    assert accepts(F, [WEATHER, PING], f"{THINK}I should look it up.{END_THINK}" + one, required=True)
    assert not accepts(F, [WEATHER, PING], "<|START_RESPONSE|>Hi<|END_RESPONSE|>", required=True)
    assert not accepts(F, [WEATHER, PING], f"{ACTION}[{_item('x', 'ping', {})}]{END_ACTION}", required=True)
    two = f"{ACTION}[{_item('0', 'ping', {})}, {_item('1', 'ping', {})}]{END_ACTION}"
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], "<|START_RESPONSE|>Let me check.<|END_RESPONSE|>" + one)


# -- Cohere2 MoE: the same actions, text between <|START_TEXT|> and <|END_TEXT|> --------------------

C = ToolFormat.COHERE2_MOE
C_SOURCE = "{{ '<|START_THINKING|>' }}<|START_TEXT|><|START_ACTION|><|START_RESPONSE|>"


def test_cohere2_moe_detected_before_r7b():
    assert detect(C_SOURCE, tools=False, choice_none=False, schema=False) is C


def test_cohere2_moe_text_markers_are_dropped_and_r7b_markers_kept():
    msg = final_message(OutputSpec(C), "<|START_TEXT|>Hi.<|END_TEXT|>")
    assert (msg.content, msg.tool_calls) == ("Hi.", [])
    assert final_message(OutputSpec(C), "<|START_RESPONSE|>Hi.").content == "<|START_RESPONSE|>Hi."


def test_cohere2_moe_thoughts_end_at_the_action():
    from service.chat.reasoning import ReasoningFormat, split_reasoning, tags_for

    text = f"plan{ACTION}[{_item('0', 'ping', {})}]{END_ACTION}"
    split = split_reasoning(text, tags_for(C_SOURCE), ReasoningFormat.DEEPSEEK, partial=False, forced=True)
    assert split.reasoning == "plan" and split.rest.startswith(ACTION)
    msg = final_message(OutputSpec(C, schemas=TOOLS), split.rest)
    assert [(c.id, c.name) for c in msg.tool_calls] == [("0", "ping")]


def test_cohere2_moe_stream_never_shows_markers():
    out, text = OutputStream(OutputSpec(C, schemas=TOOLS)), "<|START_TEXT|>Sure.<|END_TEXT|>"
    deltas = [d for i in range(0, len(text), 3) for d in out.feed(text[i:i + 3])]
    msg, last = out.finish(text)
    assert "".join(d.content for d in [*deltas, *last]) == "Sure." == msg.content


def test_cohere2_moe_grammar_forces_an_action():
    call = f"{ACTION}[{_item('0', 'get_weather', {'city': 'Oslo'})}]{END_ACTION}"
    assert accepts(C, [WEATHER, PING], call, required=True)
    assert not accepts(C, [WEATHER, PING], "<|START_TEXT|>Hi.<|END_TEXT|>", required=True)
    assert accepts(C, [WEATHER, PING], "<|START_TEXT|>Hi.<|END_TEXT|>")
