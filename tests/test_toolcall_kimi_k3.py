"""service/chat/toolcall_kimi_k3.py: Kimi K3's `<|open|>`/`<|close|>` sections read with and without
tools, streamed and malformed, and the grammar that forces a tools section (also with the markers as
special tokens, stood in for by three of SmolLM2's)."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.plan import specials
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_grammar import build_grammar
from service.sampling.lazy import Marker
from tests.chat_vocab import accepts, vocab

F = ToolFormat.KIMI_K3
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
SCHEMAS = {"get_weather": WEATHER["parameters"], "ping": PING["parameters"]}
RESP = "<|open|>response<|sep|>{}<|close|>response<|sep|>"
END = "<|close|>tools<|sep|><|close|>message<|sep|>"


def _call(name: str, **args: tuple[str, str]) -> str:
    body = "".join(f'<|open|>argument key="{k}" type="{t}"<|sep|>{v}<|close|>argument<|sep|>' for k, (t, v) in args.items())
    return f'<|open|>call tool="{name}" index="1"<|sep|>{body}<|close|>call<|sep|>'


WEATHER_CALL = RESP.format("") + "<|open|>tools<|sep|>" + _call("get_weather", city=("string", "42"), days=("number", "3")) + END


def test_detected_by_its_three_markers_and_framed_without_tools():
    src = "{{- '<|open|>' + tag -}}{{- '<|close|>' + tag + '<|sep|>' -}}<|end_of_msg|>"
    assert detect(src, tools=False, choice_none=False, schema=False) is F
    assert detect("<|open|><|close|>", tools=True, choice_none=False, schema=False) is not F
    msg = final_message(OutputSpec(F), RESP.format("Hi.") + "<|close|>message<|sep|><|end_of_msg|>")
    assert (msg.content, msg.tool_calls) == ("Hi.", [])


def test_arguments_typed_by_the_schema_not_the_attribute():
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), WEATHER_CALL)
    assert msg.content == "" and json.loads(msg.tool_calls[0].arguments) == {"city": "42", "days": 3}


def test_streamed_section_markers_never_show_in_content():
    out, text = OutputStream(OutputSpec(F, schemas=SCHEMAS)), WEATHER_CALL.replace(RESP.format(""), RESP.format("On it."))
    deltas = [d for i in range(0, len(text), 2) for d in out.feed(text[i:i + 2])]
    assert "".join(d.content for d in deltas) == "On it."
    assert [(d.tool_index, d.tool_name) for d in deltas if d.tool_name] == [(0, "get_weather")]
    msg, _ = out.finish(text)
    assert json.loads(msg.tool_calls[0].arguments) == {"city": "42", "days": 3}


@pytest.mark.parametrize("text", [
    RESP.format("") + "<|open|>tools<|sep|>" + _call("ping")[:-20],  # cut off
    RESP.format("") + "<|open|>tools<|sep|><|open|>oops<|sep|>" + END,
    RESP.format("") + "<|open|>tools<|sep|>" + _call("ping") + END + "more",
])
def test_malformed_sections_are_content(text):
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_a_tools_section():
    assert accepts(F, [WEATHER, PING], WEATHER_CALL, required=True)
    assert accepts(F, [WEATHER, PING], "<|open|>tools<|sep|>" + _call("ping") + END, required=True)
    assert not accepts(F, [WEATHER, PING], RESP.format("Hello") + "<|close|>message<|sep|>", required=True)
    assert not accepts(F, [WEATHER, PING], WEATHER_CALL.replace('"3"', '"x"').replace(">3<", ">x<"), required=True)
    two = "<|open|>tools<|sep|>" + _call("ping") + _call("ping") + END
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], RESP.format("Sure.") + "<|close|>message<|sep|>")
    assert accepts(F, [WEATHER, PING], WEATHER_CALL)


# the markers as special tokens: SmolLM2's <filename>, <gh_stars> and <file_sep> stand in for them
STAND_IN = {"<|open|>": "<filename>", "<|close|>": "<gh_stars>", "<|sep|>": "<file_sep>"}


def _as_tokens(text: str) -> str:
    for k, v in STAND_IN.items():
        text = text.replace(k, v)
    return text


def _token_accepts(text: str, **kw) -> bool:
    tok, gc = vocab()
    ids = {k: tok.token_id(v) for k, v in STAND_IN.items()}
    assert all(i is not None and gc.lltokenizer.is_special_token(i) for i in ids.values())
    lark = build_grammar(F, [WEATHER, PING], response_schema=None, specials=specials(gc),
                         marker=lambda s: Marker(s, ids.get(s)), **kw)
    c = gc.compile(grammar=lark)
    for t in tok.tokenize(_as_tokens(text), add_special=False, parse_special=True):
        if not c.allows(t):
            return False
        c.accept(t)
    return c.is_accepting


def test_grammar_with_special_token_markers():
    kw = {"required": False, "parallel": False}
    assert _token_accepts(WEATHER_CALL, **kw)
    assert _token_accepts(RESP.format("Use the tools tag.") + "<|close|>message<|sep|>", **kw)
    assert not _token_accepts(RESP.format("") + "<|open|>tools<|sep|>" + _call("delete") + END, **kw)
    assert not _token_accepts(WEATHER_CALL.replace(">3<", ">x<"), **kw)
    forced = {"required": True, "parallel": False}
    assert _token_accepts(WEATHER_CALL, **forced)
    assert not _token_accepts(RESP.format("Hello") + "<|close|>message<|sep|>", **forced)
    # the prompt opened the thoughts: a forced call follows their closer
    opened = {**forced, "think_close": "<|close|>think<|sep|>"}
    assert _token_accepts("Let me see.<|close|>think<|sep|>" + WEATHER_CALL, **opened)
    assert not _token_accepts("Let me see.<|close|>think<|sep|>" + RESP.format("No."), **opened)
