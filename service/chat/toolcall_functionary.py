"""Functionary's tool calls (MeetKai, on Llama 3.1): reading them and their grammar.

    v3.1   <function=get_weather>{"city": "Paris"}</function>
    v3.2   all\\nSome text>>>get_weather\\n{"city": "Paris"}

v3.1 writes calls as tags after any text. v3.2 addresses every part of its answer to a recipient:
the prompt ends with `>>>`, the model writes the recipient, a newline and the part; `all` is text
for the user, any other recipient is a tool and the part its JSON arguments; further parts follow
another `>>>`. The recipients frame every v3.2 answer, so its output is read this way with or
without tools (a plain answer drops its `all\\n`). While streaming, a recipient is taken once its
newline has come, and text that may still become `>>>` or a tag is held back.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import NotJSON, canonical, parse_prefix
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix

NEXT, ALL = ">>>", "all"
FN, FN_END = "<function=", "</function>"


class FunctionaryParseError(ValueError):
    pass


def _args(text: str, i: int, name: str, partial: bool) -> tuple[ToolCall | None, int, bool]:
    """The JSON arguments of `name` at i: (call, position after them, whether they are complete)."""
    try:
        node = parse_prefix(text, i, final=not partial)
    except NotJSON as e:
        if partial:
            return ToolCall(name, ""), len(text), False
        raise FunctionaryParseError(f"malformed arguments: {e}") from None
    if node is None or not node.complete:
        if not partial:
            raise FunctionaryParseError("unfinished arguments")
        return ToolCall(name, canonical(node) if node is not None else ""), len(text), False
    if node.kind != "obj":
        if partial:
            return None, len(text), False
        raise FunctionaryParseError("arguments must be an object")
    return ToolCall(name, canonical(node)), node.end, True


# -- v3.1: <function=name>{...}</function> -------------------------------------------------------

def parse_v31(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    at = text.find(FN)
    if at < 0:
        return (text[:partial_suffix(text, FN)] if partial else text), []
    content, calls, pos = text[:at], [], at
    while True:
        pos = _ws(text, pos)
        if pos >= len(text):
            return content, calls
        if not text.startswith(FN, pos):
            if partial:
                return content, calls
            raise FunctionaryParseError("text after the tool calls")
        gt = text.find(">", pos)
        if gt < 0:
            if partial:
                return content, calls
            raise FunctionaryParseError("unfinished function name")
        call, pos, done = _args(text, gt + 1, text[pos + len(FN):gt], partial)
        if call is not None:
            calls.append(call)
        if not done:
            return content, calls
        pos = _ws(text, pos)
        if text.startswith(FN_END, pos):
            pos += len(FN_END)
        elif partial:  # the closing tag is still coming (or the call went wrong: the final parse says)
            return content, calls
        else:
            raise FunctionaryParseError("expected </function>")


# -- v3.2: >>>recipient\n... ---------------------------------------------------------------------

def parse_v32(text: str, partial: bool, tools: bool = True) -> tuple[str, list[ToolCall]]:
    """tools False: the request has none, so a part for any recipient but `all` is malformed."""
    content, calls, pos = "", [], 0
    while pos < len(text):
        nl = text.find("\n", pos)
        if nl < 0:  # the recipient is still coming
            if partial:
                return content, calls
            raise FunctionaryParseError("a part without its recipient")
        who = text[pos:nl].strip()
        if who == ALL:
            end = text.find(NEXT, nl + 1)
            if end < 0:
                body = text[nl + 1:]
                return content + (body[:partial_suffix(body, NEXT)] if partial else body), calls
            content, pos = content + text[nl + 1:end], end + len(NEXT)
            continue
        if not who:
            if partial:
                return content, calls
            raise FunctionaryParseError("a part without its recipient")
        if not tools:
            if partial:
                return content, calls
            raise FunctionaryParseError(f"a part for {who!r} without tools")
        call, pos, done = _args(text, nl + 1, who, partial)
        if call is not None:
            calls.append(call)
        if not done:
            return content, calls
        pos = _ws(text, pos)
        if pos >= len(text):
            break
        if not text.startswith(NEXT, pos):
            if partial:  # `>>>` may still be coming
                return content, calls
            raise FunctionaryParseError("text after a tool call")
        pos += len(NEXT)
    if not partial and text.endswith(NEXT):
        raise FunctionaryParseError("an answer that ends with an empty part")
    return content, calls


# -- the grammars --------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, v32: bool, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """v3.1: tags, lazy on `<function=`. v3.2: recipients; forced, the answer starts with one; lazy,
    calls after a `>>>` are constrained (the first part's recipient follows the prompt's `>>>`,
    which no trigger sees, so a call there is left free)."""
    alts = []
    for k, fn in enumerate(functions):
        args = json_rule(fn.get("parameters") or {})
        name = json.dumps(fn["name"], ensure_ascii=False)
        body = f'{name} "\\n" {args}' if v32 else f'{name} ">" {args} {WS} "{FN_END}"'
        alts.append(g.rule(f"fn_{k}", body))
    one = f"({' | '.join(alts)})"
    if v32:
        g.rule("calls", f'{one} ({WS} "{NEXT}" {one})*' if parallel else one)
        return g.forced("calls", after) if required else g.lazy([Marker(NEXT)], "calls")
    g.rule("calls", f'{one} ({WS} "{FN}" {one})*' if parallel else one)
    return g.forced(f'{WS} "{FN}" calls', after) if required else g.lazy([marker(FN)], "calls")
