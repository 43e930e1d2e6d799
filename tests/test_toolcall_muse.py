"""service/chat/toolcall_muse.py: Muse Glimmer's messages to self, to the user and to tools, streamed
and malformed, and the grammar (with its markers as special tokens, stood in for by SmolLM2's)."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.plan import specials
from service.chat.reasoning import ReasoningFormat
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_grammar import build_grammar
from service.sampling.lazy import Marker
from tests.chat_vocab import accepts, vocab

F = ToolFormat.MUSE_GLIMMER
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
SCHEMAS = {"get_weather": WEATHER["parameters"], "ping": PING["parameters"]}
CALL = (' to=get_weather<|message|><atem:function_calls><atem:invoke name="get_weather">'
        '<atem:parameter name="city">Oslo</atem:parameter><atem:parameter name="days">3</atem:parameter>'
        '</atem:invoke></atem:function_calls>')
THINK = " to=self<|message|>Let me look.<|eom|><|start|>assistant"


def test_detected_and_read_without_tools():
    assert detect("<atem:function_calls> <|eom|>", tools=False, choice_none=False, schema=False) is F
    msg = final_message(OutputSpec(F), THINK + " to=user<|message|>Hi.<|eot|>")
    assert (msg.reasoning_content, msg.content) == ("Let me look.", "Hi.")
    kept = final_message(OutputSpec(F, reasoning=ReasoningFormat.NONE), THINK + "<|message|>Hi.")
    assert kept.content == THINK + "<|message|>Hi."  # no tools, thoughts kept: the output as written


def test_thoughts_answer_and_call_streamed():
    out, text = OutputStream(OutputSpec(F, schemas=SCHEMAS)), THINK + " to=user<|message|>Sure.<|eom|><|start|>assistant" + CALL
    deltas = [d for i in range(0, len(text), 3) for d in out.feed(text[i:i + 3])]
    assert "".join(d.content for d in deltas) == "Sure." and "".join(d.reasoning for d in deltas) == "Let me look."
    assert [(d.tool_index, d.tool_name) for d in deltas if d.tool_name] == [(0, "get_weather")]
    msg, _ = out.finish(text)
    assert json.loads(msg.tool_calls[0].arguments) == {"city": "Oslo", "days": 3}


@pytest.mark.parametrize("text", [
    CALL[:-25],  # cut off
    " to=user<|message|>Hi.<|eot|> more",
    " to=user<|message|>Hi.<|eom|> to=user<|message|>again",  # no <|start|>assistant between messages
    " to=ping<|message|>just text",
])
def test_malformed_answers_are_content(text):
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_a_call_after_thoughts():
    assert accepts(F, [WEATHER, PING], CALL, required=True)
    assert accepts(F, [WEATHER, PING], THINK + CALL, required=True)
    assert not accepts(F, [WEATHER, PING], " to=user<|message|>Hi.", required=True)
    assert not accepts(F, [WEATHER, PING], CALL.replace(">3<", ">three<"), required=True)


STAND_IN = {"<|message|>": "<filename>", "<|eom|>": "<gh_stars>", "<|eot|>": "<issue_start>", "<|start|>": "<file_sep>"}


def test_grammar_with_marker_tokens():
    tok, gc = vocab()
    ids = {k: tok.token_id(v) for k, v in STAND_IN.items()}

    def takes(text: str, required: bool) -> bool:
        lark = build_grammar(F, [WEATHER, PING], required=required, parallel=False, response_schema=None,
                             specials=specials(gc), marker=lambda s: Marker(s, ids.get(s)))
        c = gc.compile(grammar=lark)
        for k, v in STAND_IN.items():
            text = text.replace(k, v)
        for t in tok.tokenize(text, add_special=False, parse_special=True):
            if not c.allows(t):
                return False
            c.accept(t)
        return c.is_accepting

    assert takes(THINK + CALL, True) and not takes(THINK + " to=user<|message|>Hi.<|eot|>", True)
    assert takes(THINK + " to=user<|message|>Hi.<|eot|>", False)
    assert takes(" to=user<|message|>Sure.<|eom|><|start|>assistant" + CALL, False)
    assert not takes(" to=user<|message|>Sure.<|eom|><|start|>assistant" + CALL.replace(">3<", ">x<"), False)
