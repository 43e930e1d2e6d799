"""service/chat/toolcall_minimax_m3.py: MiniMax M3's namespaced invokes, values read by their schemas
(nested objects, arrays, unions), the bare `</mm:think>`, streaming, malformed calls, and the grammar
that forces a block (also with the namespace as a special token, stood in for by one of SmolLM2's)."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.plan import specials
from service.chat.toolcall_formats import ToolFormat, detect
from service.chat.toolcall_grammar import build_grammar
from service.sampling.lazy import Marker
from tests.chat_vocab import accepts, vocab

F = ToolFormat.MINIMAX_M3
NS = "]<]minimax[>["
PLACE = {"name": "place", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"},
    "at": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
    "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
SCHEMAS = {"place": PLACE["parameters"], "ping": PING["parameters"]}


def el(k: str, v: str) -> str:
    return f"{NS}<{k}>{v}{NS}</{k}>"


def block(*invokes: tuple[str, str]) -> str:
    body = "".join(f'{NS}<invoke name="{n}">{els}{NS}</invoke>\n' for n, els in invokes)
    return f"{NS}<tool_call>\n{body}{NS}</tool_call>"


CALL = block(("place", el("city", "42") + el("days", "3") + el("at", el("lat", "1.5") + el("lon", "-2"))
              + el("tags", el("item", "a") + el("item", "b"))))


def test_detected_before_the_tool_call_tag_formats():
    src = "{{ ']<]minimax[>[' + '<tool_call>' }}<invoke name=\"{{ name }}\"><tool_call><function=<parameter="
    assert detect(src, tools=True, choice_none=False, schema=False) is F


def test_values_by_their_schemas():
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), "</mm:think>Sure." + CALL)
    assert msg.content == "Sure." and json.loads(msg.tool_calls[0].arguments) == {
        "city": "42", "days": 3, "at": {"lat": 1.5, "lon": -2}, "tags": ["a", "b"]}


def test_without_tools_the_bare_closer_goes_and_calls_stay_text():
    msg = final_message(OutputSpec(F), "</mm:think>Hi." + CALL)
    assert (msg.content, msg.tool_calls) == ("Hi." + CALL, [])


def test_streamed_calls_never_show_in_content():
    out, text = OutputStream(OutputSpec(F, schemas=SCHEMAS)), "</mm:think>Sure." + CALL
    deltas = [d for i in range(0, len(text), 2) for d in out.feed(text[i:i + 2])]
    assert "".join(d.content for d in deltas) == "Sure."
    assert [(d.tool_index, d.tool_name) for d in deltas if d.tool_name] == [(0, "place")]
    msg, _ = out.finish(text)
    assert json.loads(msg.tool_calls[0].arguments)["tags"] == ["a", "b"]


@pytest.mark.parametrize("text", [
    CALL[:-30],  # cut off
    block(("place", el("days", "three"))),  # not an integer
    block(("place", el("tags", "a"))),  # an array without items
    CALL + " more",
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(F, schemas=SCHEMAS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_a_block():
    assert accepts(F, [PLACE, PING], CALL, required=True)
    assert accepts(F, [PLACE, PING], "<mm:think>Hmm.</mm:think>" + block(("ping", "")), required=True)
    assert not accepts(F, [PLACE, PING], "Hello", required=True)
    assert not accepts(F, [PLACE, PING], block(("place", el("days", "three"))), required=True)
    assert not accepts(F, [PLACE, PING], block(("delete", "")), required=True)
    two = block(("ping", ""), ("ping", ""))
    assert not accepts(F, [PLACE, PING], two, required=True)
    assert accepts(F, [PLACE, PING], two, required=True, parallel=True)
    assert accepts(F, [PLACE, PING], "Let me see. " + CALL)


def test_grammar_with_the_namespace_as_a_token():
    tok, gc = vocab()
    ns = tok.token_id("<filename>")

    def takes(text: str, required: bool = True) -> bool:
        lark = build_grammar(F, [PLACE, PING], required=required, parallel=False, response_schema=None,
                             specials=specials(gc), marker=lambda s: Marker(s, ns if s == NS else None))
        c = gc.compile(grammar=lark)
        for t in tok.tokenize(text.replace(NS, "<filename>"), add_special=False, parse_special=True):
            if not c.allows(t):
                return False
            c.accept(t)
        return c.is_accepting

    assert takes(CALL) and not takes(block(("place", el("days", "three"))))
    assert takes("Let me see. " + CALL, required=False) and takes("Hello", required=False)
    assert not takes("Let me see. " + block(("place", el("days", "three"))), required=False)
