"""service/chat/toolcall_ling3.py: Ling 3's sections around GLM's calls (the role opener, thoughts
that keep their whitespace and end at a call, prose after the calls, the turn's end marker),
streamed and malformed, and the GLM grammar it is forced with."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.reasoning import ReasoningFormat
from service.chat.toolcall_formats import ToolFormat, detect
from tests.chat_vocab import accepts

F = ToolFormat.LING_3
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}
SCHEMAS = {"get_weather": WEATHER["parameters"]}
CALL = "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n" \
       "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"
OPENED = OutputSpec(F, forced_open=True, schemas=SCHEMAS)


def test_detected_apart_from_glm():
    src = "<role>ASSISTANT</role><tool_call>{{ name }}<arg_key>k</arg_key><arg_value>v</arg_value>"
    assert detect(src, tools=True, choice_none=False, schema=False) is F
    assert detect(src.replace("<role>ASSISTANT</role>", ""), tools=True, choice_none=False,
                  schema=False) is ToolFormat.GLM_4_5


def test_role_opener_thoughts_and_turn_end():
    msg = final_message(OutputSpec(F, forced_open=True), "<role>ASSISTANT</role>\nHmm.\n</think>\n\nHi.<|role_end|>")
    assert (msg.reasoning_content, msg.content) == ("Hmm.\n", "Hi.")
    kept = final_message(OutputSpec(F, forced_open=True, reasoning=ReasoningFormat.NONE), "Hmm.\n</think>Hi.")
    assert (kept.reasoning_content, kept.content) == ("", "Hmm.\nHi.")


def test_streamed_thoughts_call_and_prose():
    out, text = OutputStream(OPENED), "Let me look.\n" + CALL + "\nDone."
    deltas = [d for i in range(0, len(text), 3) for d in out.feed(text[i:i + 3])]
    msg, last = out.finish(text)
    assert "".join(d.reasoning for d in [*deltas, *last]) == "Let me look.\n" == msg.reasoning_content
    assert "".join(d.content for d in [*deltas, *last]) == "\nDone." == msg.content
    assert "<tool_call>" not in "".join(d.content for d in deltas)
    assert json.loads(msg.tool_calls[0].arguments) == {"city": "Oslo", "days": 3}


@pytest.mark.parametrize("text", [CALL[:-12], "<tool_call>\n<arg_key>city</arg_key></tool_call>"])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_forced_with_glm_grammar():
    assert accepts(F, [WEATHER], CALL, required=True)
    assert not accepts(F, [WEATHER], CALL.replace(">3<", ">three<"), required=True)
