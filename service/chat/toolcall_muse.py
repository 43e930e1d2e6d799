"""Muse Glimmer's answers: messages addressed to a recipient, thoughts, text and tool calls alike.

    <|start|>assistant to=self<|message|>thoughts<|eom|>
    <|start|>assistant to=user<|message|>Let me look.<|eom|>
    <|start|>assistant to=get_weather<|message|><atem:function_calls>
    <atem:invoke name="get_weather"><atem:parameter name="city">Paris</atem:parameter></atem:invoke>
    </atem:function_calls>

The prompt writes the first `<|start|>assistant`, so the output starts at the recipient. Messages
to `self` are reasoning, to `user` (or to no one) content, to any other name a call whose markup
is MiniMax M2's invokes in the `atem:` namespace (toolcall_invoke.py). A message ends with
`<|eom|>` when another follows, `<|eot|>` at the end of the turn; markup quoted in an answer is
no call (only a message of its own is). Every answer is written so, tools or not; with
reasoning kept in the content and no tools the output is content as written (llama.cpp).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from . import toolcall_invoke
from .chatmsg import ChatMsg
from .reasoning import partial_suffix
from .toolcall_xml import schema_types

START, MESSAGE, EOM, EOT = "<|start|>assistant", "<|message|>", "<|eom|>", "<|eot|>"
ATEM = toolcall_invoke.Dialect("atem:function_calls", "atem:", typed=False, strip=False)
_HEADER = re.compile(r"(?: to=([^<]*))?" + re.escape(MESSAGE))


class MuseParseError(ValueError):
    pass


def recognise(source: str) -> bool:
    return "<atem:function_calls>" in source and EOM in source


def message(text: str, partial: bool, *, reasoning: bool, schemas: dict | None) -> ChatMsg:
    if not reasoning and schemas is None:
        return ChatMsg(text)
    content, thoughts, calls, pos = [], [], [], 0
    while True:
        m = _HEADER.match(text, pos)
        if m is None:
            if partial or not text[pos:].strip():  # a header still coming, or nothing more
                break
            raise MuseParseError("expected a message header")
        to, body = (m.group(1) or "user").strip(), m.end()
        ends = [(at, w) for w in ((EOM,) if to == "self" else (EOT, EOM)) if (at := text.find(w, body)) >= 0]
        end, word = min(ends) if ends else (len(text), "")
        part = text[body:end]
        if not word and partial:
            part = part[:min(partial_suffix(part, w) for w in (EOT, EOM))]
        if to == "self":
            (thoughts if reasoning else content).append(part)
        elif to == "user":
            content.append(part)
        else:
            if schemas is None:
                raise MuseParseError(f"a call of {to} without tools")
            before, got = toolcall_invoke.parse(part, partial and not word, schemas, ATEM)
            if before.strip() or (not got and not partial):
                raise MuseParseError(f"no call in the message to {to}")
            calls += got
        if word != EOM:
            if word and text[end + len(word):].strip() and not partial:
                raise MuseParseError("text after the end of the turn")
            break
        pos = end + len(EOM)
        if not text.startswith(START, pos):
            if partial and START.startswith(text[pos:]):
                break
            raise MuseParseError("expected the next message")
        pos += len(START)
    return ChatMsg("".join(content), "\n".join(t.strip() for t in thoughts), calls)


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """Messages from the first token: thoughts to self, then a call (required), or also an answer
    to the user that may end in a call (auto). Markup is made of markers (tokens where the
    vocabulary has them) so that text ends at them."""
    def lit(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    def m(text: str) -> str:
        return marker(text).lark()

    def until(name: str, close: str) -> str:  # text up to a marker: a lazy terminal cannot hold a token
        if close.startswith("<["):
            return f"TEXT? {close}"
        g.rule(f"{name}[lazy]", f"LAZY_TEXT {close}")
        return name

    end_param = m("</atem:parameter>")
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        params = []
        for j, (key, schema) in enumerate(props.items()):
            text = "string" in schema_types(schema) or not schema_types(schema)
            value = until(f"muse_t{k}_{j}", end_param) if text else f"{json_rule(schema)} {end_param}"
            params.append(g.rule(f"muse_{k}_{j}", f"{m('<atem:parameter')} {lit(' name=' + json.dumps(key) + '>')} {value}"))
        body = f"({WS} ({' | '.join(params)}))*" if params else ""
        name = json.dumps(fn["name"], ensure_ascii=False)
        alts.append(g.rule(f"muse_{k}", f"{lit(' to=' + fn['name'])} {m(MESSAGE)} {m('<atem:function_calls>')} {WS} "
                                        f"{m('<atem:invoke')} {lit(' name=' + name + '>')} {body} {WS} "
                                        f"{m('</atem:invoke>')} {WS} {m('</atem:function_calls>')}"))
    call = f"({' | '.join(alts)})"
    start = f"{m('<|start|>')} {lit('assistant')}"
    nxt = f"{m(EOM)} {start}"
    g.rule("calls", f"{call} ({nxt} {call})*" if parallel else call)
    thoughts = f"({lit(' to=self')} {m(MESSAGE)} {until('muse_self', m(EOM))} {start})*"
    if required:
        return g.forced(f"{thoughts} calls")
    answer = f"({lit(' to=user')})? {m(MESSAGE)} TEXT? ({m(EOT)} | {nxt} calls)?"
    return g.forced(f"{thoughts} (calls | {answer})")
