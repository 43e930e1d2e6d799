"""service/chat/toolcall_gigachat.py: GigaChat 3's `function call` message and 3.1's `<|function_call|>`,
told apart, streamed and malformed, and the grammar that forces one call (also with the separators
as special tokens, stood in for by SmolLM2's)."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.plan import specials
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_gigachat import V3, V31
from service.chat.toolcall_grammar import build_grammar
from service.sampling.lazy import Marker
from tests.chat_vocab import accepts, vocab

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
CALL = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'


def test_versions_told_apart_by_the_function_call_token():
    base = "{{ role + '<|role_sep|>\\n' + content + '<|message_sep|>\\n\\n' }}"
    assert detect(base, tools=True, choice_none=False, schema=False) is ToolFormat.GIGACHAT_3
    assert detect(base + "<|function_call|>", tools=True, choice_none=False, schema=False) is ToolFormat.GIGACHAT_3_1


@pytest.mark.parametrize("fmt,mark", [(ToolFormat.GIGACHAT_3, V3), (ToolFormat.GIGACHAT_3_1, V31)])
def test_streamed_call_never_shows_in_content(fmt, mark):
    out, text = OutputStream(OutputSpec(fmt)), "Let me see." + mark + CALL
    deltas = [d for i in range(0, len(text), 3) for d in out.feed(text[i:i + 3])]
    assert "".join(d.content for d in deltas) == "Let me see."
    assert [(d.tool_index, d.tool_name) for d in deltas if d.tool_name] == [(0, "get_weather")]
    msg, _ = out.finish(text)
    assert json.loads(msg.tool_calls[0].arguments) == {"city": "Oslo"} and msg.tool_calls[0].id


@pytest.mark.parametrize("text", [
    V31 + '{"name": "ping", "arguments": {}',  # cut off
    V31 + '{"arguments": {}}',  # no name
    V31 + '[{"name": "ping", "arguments": {}}]',  # a list
    V31 + '{"name": "ping", "arguments": {}} more',
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(ToolFormat.GIGACHAT_3_1), text)
    assert (msg.content, msg.tool_calls) == (text, [])


@pytest.mark.parametrize("fmt,mark", [(ToolFormat.GIGACHAT_3, V3), (ToolFormat.GIGACHAT_3_1, V31)])
def test_grammar_forces_one_call(fmt, mark):
    assert accepts(fmt, [WEATHER, PING], mark + CALL, required=True)
    assert not accepts(fmt, [WEATHER, PING], "Hello", required=True)
    assert not accepts(fmt, [WEATHER, PING], mark + CALL.replace("city", "town"), required=True)
    assert not accepts(fmt, [WEATHER, PING], mark + CALL + mark + CALL, required=True, parallel=True)
    assert accepts(fmt, [WEATHER, PING], "Let me see. " + mark + CALL)


def test_grammar_with_separator_tokens():
    tok, gc = vocab()
    stand_in = {"<|message_sep|>": "<filename>", "<|role_sep|>": "<file_sep>"}
    ids = {k: tok.token_id(v) for k, v in stand_in.items()}

    def takes(text: str, required: bool) -> bool:
        lark = build_grammar(ToolFormat.GIGACHAT_3, [WEATHER, PING], required=required, parallel=False,
                             response_schema=None, specials=specials(gc), marker=lambda s: Marker(s, ids.get(s)))
        c = gc.compile(grammar=lark)
        for k, v in stand_in.items():
            text = text.replace(k, v)
        for t in tok.tokenize(text, add_special=False, parse_special=True):
            if not c.allows(t):
                return False
            c.accept(t)
        return c.is_accepting

    assert takes(V3 + CALL, True) and not takes(V3 + CALL.replace("city", "town"), True)
    assert takes("Sure." + V3 + CALL, False) and not takes("Sure." + V3 + CALL.replace("city", "town"), False)
    assert takes("Sure.<|message_sep|>\n\n", False)  # the separator also ends a plain message
