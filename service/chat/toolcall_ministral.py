"""Ministral 3 / Magistral and Devstral tool calls: reading them and their grammar.

    Let me look.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"city": "Paris"}

Each call is its own `[TOOL_CALLS]` marker, the bare name, `[ARGS]` and a JSON object; there is no
closing marker and no id (Mistral Small 3.2's `[CALL_ID]` spelling and Nemo's JSON list are
toolcall_json.py's). llama.cpp recognises these templates by `[SYSTEM_PROMPT]` with `[ARGS]` and
no `[CALL_ID]`. The `[THINK]...[/THINK]` block is reasoning.py's, so a marker written inside the
thoughts is never read as a call. While streaming, a call is announced once `[ARGS]` has closed
its name, so the name sent is the final one.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import NotJSON, canonical, parse_prefix
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix

CALL, ARGS = "[TOOL_CALLS]", "[ARGS]"


class MinistralParseError(ValueError):
    pass


def recognise(source: str) -> bool:
    return all(m in source for m in ("[SYSTEM_PROMPT]", CALL, ARGS)) and "[CALL_ID]" not in source


def parse(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    at = text.find(CALL)
    if at < 0:
        return (text[:partial_suffix(text, CALL)] if partial else text), []
    content, calls, pos = text[:at], [], at
    while text.startswith(CALL, pos):
        call, pos, done = _call(text, pos + len(CALL), partial)
        if call is not None:
            calls.append(call)
        if not done:
            return content, calls
        pos = _ws(text, pos)
    if pos < len(text):
        if partial:  # the next call's marker may still be coming; the final parse judges the rest
            return content, calls
        raise MinistralParseError("text after the tool calls")
    return content, calls


def _call(text: str, i: int, partial: bool) -> tuple[ToolCall | None, int, bool]:
    """The call whose name starts at i: (call or None, position after it, whether it is complete)."""
    sep = text.find(ARGS, i)
    nxt = text.find(CALL, i)
    if sep < 0 or 0 <= nxt < sep:
        if partial:
            return None, len(text), False
        raise MinistralParseError("a tool call without [ARGS]")
    name = text[i:sep].strip()
    if not name or any(c.isspace() for c in name):
        if partial:
            return None, len(text), False
        raise MinistralParseError(f"malformed tool name {name!r}")
    try:
        node = parse_prefix(text, sep + len(ARGS), final=not partial)
    except NotJSON as e:
        if partial:
            return ToolCall(name, ""), len(text), False
        raise MinistralParseError(f"malformed arguments: {e}") from None
    if node is None or not node.complete:
        if not partial:
            raise MinistralParseError("unfinished arguments")
        return ToolCall(name, canonical(node) if node is not None else ""), len(text), False
    if node.kind != "obj":
        if partial:
            return None, len(text), False
        raise MinistralParseError("arguments must be an object")
    return ToolCall(name, canonical(node)), node.end, True


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """`[TOOL_CALLS]name[ARGS]{...}` calls of `functions`; lazy on the marker unless one is required."""
    call, args = marker(CALL), marker(ARGS)
    alts = [g.rule(f"ministral_{k}", f"{json.dumps(fn['name'], ensure_ascii=False)} {args.lark()} "
                                      f"{json_rule(fn.get('parameters') or {})}")
            for k, fn in enumerate(functions)]
    one = f"({' | '.join(alts)})"
    # nothing after the last call: trailing whitespace would let a small model write newlines until max_tokens
    g.rule("calls", f"{one} ({WS} {call.lark()} {one})*" if parallel else one)
    if required:
        return g.forced(f"{WS} {call.lark()} calls", after)
    return g.lazy([call], "calls")
