"""DeepSeek's tool calls (R1 and its distills, V3.1): reading them and their grammar.

    R1     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\\n```json\\n{...}```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
    V3.1   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{...}<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>

Content before the calls is kept as written. While streaming, a tail that may become the calls'
opening marker is held back; a call is named once its name is complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import NotJSON, canonical, parse_prefix
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix

CALLS, CALL, SEP, END, CALLS_END = ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
                                    "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>")
_FENCE = re.compile(r"\n?```(?:json)?\n?")


class DeepSeekParseError(ValueError):
    pass


def parse(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    at = text.find(CALLS)
    if at < 0:
        return (text[:partial_suffix(text, CALLS)] if partial else text), []
    content, calls, pos = text[:at], [], at + len(CALLS)
    while True:
        pos = _ws(text, pos)
        if text.startswith(CALLS_END, pos) or (pos >= len(text) and not partial and calls):
            return content, calls
        if not text.startswith(CALL, pos):
            if partial:
                return content, calls
            raise DeepSeekParseError("expected a tool call")
        call, pos, done = _call(text, pos + len(CALL), partial)
        if call is not None:
            calls.append(call)
        if not done:
            return content, calls


def _call(text: str, i: int, partial: bool) -> tuple[ToolCall | None, int, bool]:
    sep = text.find(SEP, i)
    if sep < 0:
        if partial:
            return None, len(text), False
        raise DeepSeekParseError("unfinished tool call")
    name, j = text[i:sep], sep + len(SEP)
    if name == "function":  # R1: the type, then the name up to the fence
        nl = text.find("\n", j)
        if nl < 0:
            if partial:
                return None, len(text), False
            raise DeepSeekParseError("unfinished tool call name")
        name, j = text[j:nl], nl
        m = _FENCE.match(text, j)
        if m is None or (partial and m.end() == len(text)):
            if partial:
                return ToolCall(name, ""), len(text), False
            raise DeepSeekParseError("expected ```json after the tool name")
        j = m.end()
    try:
        node = parse_prefix(text, j, final=not partial)
    except NotJSON as e:
        if partial:
            return ToolCall(name, ""), len(text), False
        raise DeepSeekParseError(f"malformed arguments: {e}") from None
    if node is None or not node.complete:
        if not partial:
            raise DeepSeekParseError("unfinished arguments")
        return ToolCall(name, canonical(node)), len(text), False
    k = node.end
    m = re.compile(r"\s*(?:```)?\s*").match(text, k)
    k = m.end() if m else k
    if not text.startswith(END, k):
        if partial and END.startswith(text[k:]):
            return ToolCall(name, canonical(node)), len(text), False
        if partial:
            return ToolCall(name, canonical(node)), len(text), False
        raise DeepSeekParseError("expected the end of the tool call")
    return ToolCall(name, canonical(node)), k + len(END), True


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, r1: bool, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    calls, call, sep, end, calls_end = (marker(m).lark() for m in (CALLS, CALL, SEP, END, CALLS_END))
    alts = []
    for k, fn in enumerate(functions):
        args = json_rule(fn.get("parameters") or {})
        name = _q(fn["name"])
        body = (f'"function" {sep} {name} "\\n```json\\n" {args} "```"' if r1 else f"{name} {sep} {args}")
        alts.append(g.rule(f"ds_{k}", f"{call} {body} {end}"))
    one = f"({' | '.join(alts)})"
    g.rule("calls", f"{WS} {one} ({WS} {one})* {WS} {calls_end}" if parallel else f"{WS} {one} {WS} {calls_end}")
    return g.forced(f"{WS} {calls} calls", after) if required else g.lazy([marker(CALLS)], "calls")


def _q(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)
