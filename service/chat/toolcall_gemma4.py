"""Gemma 4's answers: thought channels, text and tool calls in Gemma's own literal syntax; reading them and their grammar.

    <|channel>thought
    Let me check.<channel|>Sure.<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:3}<tool_call|>

A thought block (`<|channel>thought` to `<channel|>`) is reasoning, and there may be several; with
--reasoning-format none it stays in the content, markers and all. The model also writes stray
markers (an empty `<|channel>`, a lone `<channel|>` at the end), which are dropped, as llama.cpp
does. A call's arguments are a dict of bare keys; strings sit between `<|"|>` quotes; numbers,
true/false/null, lists and dicts are JSON-like. The markers frame every answer, so the output is
read this way with or without tools. While streaming, a call is announced once its name is
complete and its arguments arrive whole when the dict closes (the syntax is not JSON, so no
prefix of it is sent as JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker

from .chatmsg import ChatMsg, ToolCall
from .partial_json import dumps
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix

TURN, OPEN, CLOSE = "<|turn>model\n", "<|channel>", "<channel|>"
THOUGHT = OPEN + "thought"
CALL, CALL_END, QUOTE = "<|tool_call>call:", "<tool_call|>", '<|"|>'
_MARKS = (OPEN, CLOSE, "<|tool_call>")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


class Gemma4ParseError(ValueError):
    pass


class _Incomplete(Exception):
    """The output ends inside a value."""


def message(text: str, partial: bool, *, reasoning: bool, tools: bool) -> ChatMsg:
    """The message in `text`: thoughts to reasoning (to content when `reasoning` is off), calls
    when `tools` (a call without tools is malformed). A final parse raises Gemma4ParseError."""
    text = text[len(TURN):] if text.startswith(TURN) else text
    content, thoughts, calls, pos = [], [], [], 0
    while pos < len(text):
        at = min([i for i in (text.find(m, pos) for m in _MARKS) if i >= 0], default=-1)
        if at < 0:
            tail = text[pos:]
            content.append(tail[:min(partial_suffix(tail, m) for m in (*_MARKS, CALL))] if partial else tail)
            break
        content.append(text[pos:at])
        if text.startswith(CLOSE, at):  # a stray end of channel
            pos = at + len(CLOSE)
        elif text.startswith(OPEN, at):
            if THOUGHT.startswith(text[at:at + len(THOUGHT)]) and len(text) - at < len(THOUGHT) and partial:
                break  # may still become a thought block
            if not text.startswith(THOUGHT, at):  # an empty channel opening
                pos = at + len(OPEN)
                continue
            end = text.find(CLOSE, at)
            body = text[at + len(THOUGHT):] if end < 0 else text[at + len(THOUGHT):end]
            if end < 0 and partial:
                body = body[:partial_suffix(body, CLOSE)]
            if reasoning:
                thoughts.append(body.lstrip())
            else:
                content.append(text[at:] if end < 0 else text[at:end + len(CLOSE)])
            if end < 0:
                break
            pos = end + len(CLOSE)
        else:
            if not tools:
                if partial:
                    break
                raise Gemma4ParseError("a tool call without tools")
            pos, done = _calls(text, at, partial, calls)
            if not done:
                break
    return ChatMsg("".join(content), "".join(thoughts), calls)


def _calls(text: str, i: int, partial: bool, calls: list[ToolCall]) -> tuple[int, bool]:
    """The calls from i on into `calls`: (position after them, whether the output may go on)."""
    while True:
        if not text.startswith(CALL, i):
            if partial:  # "call:" may still be coming
                return len(text), False
            raise Gemma4ParseError("expected call: after <|tool_call>")
        brace = text.find("{", i)
        if brace < 0:
            if partial:
                return len(text), False
            raise Gemma4ParseError("unfinished tool call")
        name = text[i + len(CALL):brace]
        try:
            args, j = _dict(text, brace)
        except (_Incomplete, Gemma4ParseError) as e:
            if not partial:  # what reads wrong in a prefix (`1.5e`) may be right once the rest comes
                raise Gemma4ParseError(f"unfinished or malformed call of {name}") from e
            calls.append(ToolCall(name, ""))
            return len(text), False
        calls.append(ToolCall(name, dumps(args)))
        if text.startswith(CALL_END, j):
            j += len(CALL_END)
        elif partial and CALL_END.startswith(text[j:]):
            return len(text), False
        elif not partial:
            raise Gemma4ParseError("expected <tool_call|>")
        if text.startswith("<|tool_call>", j):
            i = j
            continue
        return j, True


def _value(text: str, i: int):
    i = _ws(text, i)
    if i >= len(text) or (text[i] == "<" and QUOTE.startswith(text[i:])):
        raise _Incomplete
    if text.startswith(QUOTE, i):
        end = text.find(QUOTE, i + len(QUOTE))
        if end < 0:
            raise _Incomplete
        return text[i + len(QUOTE):end], end + len(QUOTE)
    if text[i] == "{":
        return _dict(text, i)
    if text[i] == "[":
        out, i = [], _ws(text, i + 1)
        if text.startswith("]", i):
            return out, i + 1
        while True:
            v, i = _value(text, i)
            out.append(v)
            i = _ws(text, i)
            if i >= len(text):
                raise _Incomplete
            if text[i] == "]":
                return out, i + 1
            if text[i] != ",":
                raise Gemma4ParseError(f"expected , or ] at {i}")
            i += 1
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, i):
            return value, i + len(word)
        if word.startswith(text[i:]):
            raise _Incomplete
    m = _NUMBER.match(text, i)
    if m is None:
        raise Gemma4ParseError(f"not a value at {i}")
    if m.end() >= len(text):
        raise _Incomplete  # the number may go on
    return json.loads(m.group()), m.end()


def _dict(text: str, i: int) -> tuple[dict, int]:
    out, i = {}, _ws(text, i + 1)
    if text.startswith("}", i):
        return out, i + 1
    while True:
        colon = text.find(":", i)
        if colon < 0:
            raise _Incomplete
        key = text[i:colon].strip()
        if not key or "}" in key:
            raise Gemma4ParseError(f"malformed key at {i}")
        out[key], i = _value(text, colon + 1)
        i = _ws(text, i)
        if i >= len(text):
            raise _Incomplete
        if text[i] == "}":
            return out, i + 1
        if text[i] != ",":
            raise Gemma4ParseError(f"expected , or }} at {i}")
        i = _ws(text, i + 1)


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """Calls of `functions` with their parameters in Gemma's syntax, typed where the schema names a
    simple type; lazy on `<|tool_call>` unless a call is required (then after an optional thought)."""
    trig, end, open_, close = marker("<|tool_call>"), marker(CALL_END), marker(OPEN), marker(CLOSE)
    q = _lit(QUOTE)
    g.rule("g4_str_body[lazy]", f"LAZY_TEXT {q}")
    g.rule("g4_str", f"{q} g4_str_body")
    g.rule("g4_num", r"/-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,16})?([eE][+-]?[0-9]{1,3})?/")
    g.rule("g4_int", r"/-?(0|[1-9][0-9]{0,15})/")
    g.rule("g4_value", 'g4_str | g4_num | "true" | "false" | "null" | g4_list | g4_dict')
    g.rule("g4_list", '"[" (g4_value ("," g4_value)*)? "]"')
    g.rule("g4_dict", '"{" (/[A-Za-z_][A-Za-z0-9_]*/ ":" g4_value ("," /[A-Za-z_][A-Za-z0-9_]*/ ":" g4_value)*)? "}"')
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        pairs = [g.rule(f"g4_{k}_{j}", f"{_lit(key + ':')} {_value_rule(schema)}") for j, (key, schema) in enumerate(props.items())]
        one = f"({' | '.join(pairs)})"
        body = f'"{{" ({one} ("," {one})*)? "}}"' if pairs else '"{}"'
        alts.append(g.rule(f"g4_{k}", f"{_lit(fn['name'])} {body}"))
    call = f'"call:" ({" | ".join(alts)}) {end.lark()}'
    g.rule("calls", f"{call} ({trig.lark()} {call})*" if parallel else call)
    if not required:
        return g.lazy([trig], "calls")
    g.rule("g4_thought[lazy]", f"LAZY_TEXT {close.lark()}")
    return g.forced(f"({open_.lark()} \"thought\" g4_thought)? {WS} {trig.lark()} calls", after)


def _value_rule(schema: dict) -> str:
    kind = schema.get("type") if isinstance(schema, dict) else None
    enum = schema.get("enum") if isinstance(schema, dict) else None
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return "(" + " | ".join(f"{_lit(QUOTE + v + QUOTE)}" for v in enum) + ")"
    return {"string": "g4_str", "integer": "g4_int", "number": "g4_num", "boolean": '("true" | "false")',
            "null": '"null"', "array": "g4_list", "object": "g4_dict"}.get(kind, "g4_value")


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
