"""MiniMax M2's tool calls: XML invokes inside a namespaced block; reading them and their grammar.

    <minimax:tool_call>
    <invoke name="get_weather">
    <parameter name="city">Paris</parameter>
    </invoke>
    </minimax:tool_call>

A block may hold several invokes, and several blocks may follow one another. A parameter's text
becomes JSON by the tool's schema as Qwen3-Coder's does (toolcall_xml.typed_value). The prompt
opens the thinking block (`<think>\\n`), which reasoning.py splits off. Content before the calls is
kept as written; while streaming, a call is announced once its name's quote closes and grows
parameter by parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import dumps
from .reasoning import partial_suffix
from .toolcall_xml import schema_types, typed_value

BLOCK, END_BLOCK = "<minimax:tool_call>", "</minimax:tool_call>"
END_INVOKE, END_PARAM = "</invoke>", "</parameter>"
_INVOKE = re.compile(r'<invoke name="([^"]+)">')
_PARAM = re.compile(r'<parameter name="([^"]+)">')


class MiniMaxParseError(ValueError):
    pass


def parse(text: str, partial: bool, schemas: dict[str, dict]) -> tuple[str, list[ToolCall]]:
    at = text.find(BLOCK)
    if at < 0:
        return (text[:partial_suffix(text, BLOCK)] if partial else text), []
    content, calls, pos = text[:at], [], at
    while True:  # blocks
        pos = _ws(text, pos)
        if pos >= len(text):
            return content, calls
        if not text.startswith(BLOCK, pos):
            if partial:
                return content, calls
            raise MiniMaxParseError("text after the tool calls")
        pos += len(BLOCK)
        while True:  # invokes
            pos = _ws(text, pos)
            if text.startswith(END_BLOCK, pos):
                pos += len(END_BLOCK)
                break
            m = _INVOKE.match(text, pos)
            if m is None:
                if partial:
                    return content, calls
                raise MiniMaxParseError("expected <invoke name=...> or the end of the block")
            call, pos, done = _invoke(text, m, (schemas.get(m.group(1)) or {}).get("properties") or {}, partial)
            calls.append(call)
            if not done:
                return content, calls


def _ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n":
        i += 1
    return i


def _invoke(text: str, m: re.Match, props: dict, partial: bool) -> tuple[ToolCall, int, bool]:
    name, args, pos = m.group(1), [], m.end()
    while True:
        pos = _ws(text, pos)
        if text.startswith(END_INVOKE, pos):
            return ToolCall(name, "{" + ",".join(args) + "}"), pos + len(END_INVOKE), True
        p = _PARAM.match(text, pos)
        end = text.find(END_PARAM, p.end()) if p is not None else -1
        if end < 0:
            break
        key = p.group(1)
        args.append(f"{dumps(key)}:{dumps(typed_value(text[p.end():end], props.get(key)))}")
        pos = end + len(END_PARAM)
    if not partial:
        raise MiniMaxParseError(f"unfinished call of {name}")
    return ToolCall(name, "{" + ",".join(args)), len(text), False


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """A block of invokes of `functions` (several when parallel); lazy on the block's opening tag
    unless a call is required. A string value is any text up to its closing tag, others JSON."""
    open_, close = marker(BLOCK), marker(END_BLOCK)
    g.rule("mm_text[lazy]", f"LAZY_TEXT {_lit(END_PARAM)}")
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        params = []
        for j, (key, schema) in enumerate(props.items()):
            value = "mm_text" if "string" in schema_types(schema) else f"{json_rule(schema)} {_lit(END_PARAM)}"
            params.append(g.rule(f"mm_{k}_{j}", f"{WS} {_lit(f'<parameter name={json.dumps(key, ensure_ascii=False)}>')} {value}"))
        body = f"({' | '.join(params)})*" if params else ""
        head = _lit(f"<invoke name={json.dumps(fn['name'], ensure_ascii=False)}>")
        alts.append(g.rule(f"mm_{k}", f"{head} {body} {WS} {_lit(END_INVOKE)}"))
    one = f"{WS} ({' | '.join(alts)})"
    g.rule("calls", f"({one}){'+' if parallel else ''} {WS} {close.lark()}")
    return g.forced(f"{WS} {open_.lark()} calls", after) if required else g.lazy([open_], "calls")


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
