"""Kimi K2's tool calls (K2 Instruct, K2 Thinking): reading them and their grammar.

    <|tool_calls_section_begin|>
    <|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>
    <|tool_calls_section_end|>

The call's id is what the model wrote before the arguments (`functions.<name>:<counter>`): the
template prints it again with the tool's result, so it is kept as the call's id rather than
replaced by a random one. The model is loose with the markers (llama.cpp's tests show it): the
section markers and the call's end marker may be missing, and a call may start inside an
unclosed thinking block (reasoning.py ends the block at these markers). Content before the calls
is kept as written. While streaming, a call is announced once its id is complete (the arguments'
marker follows it), so the id sent first is the final one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import NotJSON, canonical, parse_prefix
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix

SECTION, CALL, ARGS, END, SECTION_END = ("<|tool_calls_section_begin|>", "<|tool_call_begin|>",
                                         "<|tool_call_argument_begin|>", "<|tool_call_end|>",
                                         "<|tool_calls_section_end|>")
_ID = re.compile(r"\s*(?:functions\.)?(?P<name>[^\s:<]+)(?::\d+)?\s*$")


class KimiParseError(ValueError):
    pass


def parse(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    starts = [at for at in (text.find(SECTION), text.find(CALL)) if at >= 0]
    if not starts:
        if partial:
            return text[:min(partial_suffix(text, SECTION), partial_suffix(text, CALL))], []
        return text, []
    at = min(starts)
    content, calls, pos = text[:at], [], _skip(text, at, SECTION)
    while True:
        pos = _ws(text, pos)
        if not text.startswith(CALL, pos):
            break
        call, pos, done = _call(text, pos + len(CALL), partial)
        if call is not None:
            calls.append(call)
        if not done:
            return content, calls
    pos = _ws(text, _skip(text, pos, SECTION_END))
    if pos < len(text):
        if partial:  # a marker may still be coming
            return content, calls
        raise KimiParseError("text after the tool calls" if calls else "expected a tool call")
    if not calls and not partial:
        raise KimiParseError("a tool call section without calls")
    return content, calls


def _skip(text: str, i: int, word: str) -> int:
    j = _ws(text, i)
    return j + len(word) if text.startswith(word, j) else i


def _call(text: str, i: int, partial: bool) -> tuple[ToolCall | None, int, bool]:
    """The call whose id starts at i: (call or None, position after it, whether it is complete)."""
    sep = text.find(ARGS, i)
    if sep < 0:
        if partial:
            return None, len(text), False
        raise KimiParseError("unfinished tool call id")
    ident = text[i:sep].strip()
    m = _ID.match(ident)
    if m is None:
        if partial:
            return None, len(text), False
        raise KimiParseError(f"malformed tool call id {ident!r}")
    name, j = m.group("name"), sep + len(ARGS)
    try:
        node = parse_prefix(text, j, final=not partial)
    except NotJSON as e:
        if partial:
            return ToolCall(name, "", ident), len(text), False
        raise KimiParseError(f"malformed arguments: {e}") from None
    if node is None or not node.complete:
        if not partial:
            raise KimiParseError("unfinished arguments")
        return ToolCall(name, canonical(node) if node is not None else "", ident), len(text), False
    if node.kind != "obj":
        if partial:
            return None, len(text), False
        raise KimiParseError("arguments must be an object")
    return ToolCall(name, canonical(node), ident), _skip(text, node.end, END), True


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """Calls of `functions`, numbered by the model; lazy on the call marker unless one is required."""
    section, call, args, end, section_end = (marker(m) for m in (SECTION, CALL, ARGS, END, SECTION_END))
    alts = []
    for k, fn in enumerate(functions):
        head = json.dumps(f"functions.{fn['name']}:", ensure_ascii=False)
        body = f"{head} /[0-9]{{1,3}}/ {args.lark()} {json_rule(fn.get('parameters') or {})} {end.lark()}"
        alts.append(g.rule(f"kimi_{k}", body))
    one = f"({' | '.join(alts)})"
    more = f"({WS} {call.lark()} {one})*" if parallel else ""
    # nothing after the last call but the section's end: the constraint then leaves only the end of
    # generation, where trailing whitespace would let a small model write newlines until max_tokens
    g.rule("calls", f"{one} {more} ({WS} {section_end.lark()})?")
    if required:
        return g.forced(f"{WS} {section.lark()}? {WS} {call.lark()} calls", after)
    return g.lazy([call], "calls")
