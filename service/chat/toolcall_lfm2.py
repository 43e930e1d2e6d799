"""LFM2 / LFM2.5's tool calls (Liquid AI): a Python-style list of calls between markers; reading them and their grammar.

    Let me check.<|tool_call_start|>[get_weather(city="Paris", days=3), ping()]<|tool_call_end|>

Arguments are keyword arguments with Python literals (strings with escapes, numbers, True/False/
None, lists, dicts); JSON's true/false/null are read too, as llama.cpp does. Names may be dotted
(`Calendar.create_event`). Content before the marker is kept as written. While streaming, a call
is announced once its name and opening parenthesis have come, and grows argument by argument
(an argument counts once the comma or parenthesis after it shows that its value is complete).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import dumps
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix

START, END = "<|tool_call_start|>", "<|tool_call_end|>"
_NAME = re.compile(r"[ \t\n]*([A-Za-z_][\w.\-]*)[ \t\n]*\(")
_KEY = re.compile(r"[ \t\n]*([A-Za-z_]\w*)[ \t\n]*=")
_LITERALS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}


class Lfm2ParseError(ValueError):
    pass


def parse(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    at = text.find(START)
    if at < 0:
        return (text[:partial_suffix(text, START)] if partial else text), []
    content, calls = text[:at], []
    pos = _ws(text, at + len(START))
    if not text.startswith("[", pos):
        if partial:
            return content, calls
        raise Lfm2ParseError("expected [ after the tool call marker")
    pos += 1
    while True:
        m = _NAME.match(text, pos)
        if m is None:
            if partial:
                return content, calls
            raise Lfm2ParseError("expected a call")
        call, pos, done = _call(text, m, partial)
        calls.append(call)
        if not done:
            return content, calls
        pos = _ws(text, pos)
        if text.startswith(",", pos):
            pos += 1
            continue
        if text.startswith("]", pos):
            break
        if partial:
            return content, calls
        raise Lfm2ParseError("expected , or ] after a call")
    pos = _ws(text, pos + 1)
    if text.startswith(END, pos):
        pos = _ws(text, pos + len(END))
    elif not partial and pos < len(text):
        raise Lfm2ParseError("expected <|tool_call_end|>")
    if not partial and pos < len(text):
        raise Lfm2ParseError("text after the tool calls")
    return content, calls


def _call(text: str, m: re.Match, partial: bool) -> tuple[ToolCall, int, bool]:
    name, args, pos = m.group(1), [], m.end()
    while True:
        pos = _ws(text, pos)
        if text.startswith(")", pos):
            return ToolCall(name, "{" + ",".join(args) + "}"), pos + 1, True
        k = _KEY.match(text, pos)
        end = _value_end(text, k.end()) if k is not None else -1
        if end < 0:
            break
        try:
            value = _literal(text[k.end():end])
        except Lfm2ParseError:
            if partial:  # the final parse says what is wrong; a stream sends nothing of it
                break
            raise
        args.append(f"{dumps(k.group(1))}:{dumps(value)}")
        pos = end + 1 if text[end] == "," else end
    if not partial:
        raise Lfm2ParseError(f"unfinished call of {name}")
    return ToolCall(name, "{" + ",".join(args)), len(text), False


def _value_end(text: str, i: int) -> int:
    """Where the value starting at i ends: the index of the `,` or `)` after it at depth 0, or -1
    when the text ends first."""
    depth, quote, j = 0, "", i
    while j < len(text):
        ch = text[j]
        if quote:
            if ch == "\\":
                j += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            if depth == 0:
                return j if ch == ")" else -1
            depth -= 1
        elif ch == "," and depth == 0:
            return j
        j += 1
    return -1


def _literal(src: str):
    """A Python (or JSON) literal's value."""
    try:
        return _value(ast.parse(src.strip(), mode="eval").body)
    except (SyntaxError, ValueError) as e:
        raise Lfm2ParseError(f"not a literal: {src.strip()!r}") from e


def _value(node: ast.AST):
    if isinstance(node, ast.Constant) and not isinstance(node.value, (bytes, complex)):
        return node.value
    if isinstance(node, ast.Name) and node.id in _LITERALS:
        return _LITERALS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {str(_value(k)): _value(v) for k, v in zip(node.keys, node.values)}
    raise ValueError("not a literal")


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """The marker, a list of calls of `functions` with keyword arguments, the end marker; lazy on the
    start marker unless a call is required. Values are written as JSON (a Python string literal
    with double quotes is one), which both readers accept."""
    start, end = marker(START), marker(END)
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        params = [g.rule(f"lfm_{k}_{j}", f"{_lit(key + '=')} {json_rule(schema)}")
                  for j, (key, schema) in enumerate(props.items())]
        one = f"({' | '.join(params)})"
        args = f"({one} (\", \" {one})*)?" if params else ""
        alts.append(g.rule(f"lfm_{k}", f"{_lit(fn['name'] + '(')} {args} \")\""))
    call = f"({' | '.join(alts)})"
    g.rule("calls", f'{WS} "[" {call} (", " {call})* "]" {end.lark()}' if parallel else f'{WS} "[" {call} "]" {end.lark()}')
    return g.forced(f"{WS} {start.lark()} calls", after) if required else g.lazy([start], "calls")


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
