"""MiniCPM5's tool calls: `<function>` elements with `<param>` children; reading them and their grammar.

    Let me run it.<function name="python"><param name="code"><![CDATA[print("<hi>")]]></param></function>

Calls follow the content one after another, with nothing around them. A parameter the schema
lets be a string (or says nothing of) is text, wrapped in CDATA when it holds what would close
its tag; any other is JSON (llama.cpp). Thoughts are reasoning.py's `<think>` block. While
streaming, a call is announced once its name's quote closes and grows parameter by parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import dumps
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix
from .toolcall_xml import schema_types

OPEN, END, END_PARAM, CDATA, END_CDATA = '<function name="', "</function>", "</param>", "<![CDATA[", "]]>"
_FUNCTION = re.compile(r'<function name="([^"]+)">')
_PARAM = re.compile(r'<param name="([^"]+)">')


class MiniCPM5ParseError(ValueError):
    pass


def recognise(source: str) -> bool:
    return all(m in source for m in ("Tool usage guidelines:", '<function name="', '<param name="'))


def parse(text: str, partial: bool, schemas: dict | None) -> tuple[str, list[ToolCall]]:
    at = text.find(OPEN)
    if at < 0:
        return (text[:partial_suffix(text, OPEN)] if partial else text), []
    content, calls, pos = text[:at], [], at
    while True:
        pos = _ws(text, pos)
        if pos >= len(text):
            return content, calls
        m = _FUNCTION.match(text, pos)
        if m is None:
            if partial:
                return content, calls
            raise MiniCPM5ParseError("text after the tool calls")
        props = ((schemas or {}).get(m.group(1)) or {}).get("properties") or {}
        call, pos = _function(text, m, props, partial)
        calls.append(call)
        if pos < 0:
            return content, calls


def _function(text: str, m: re.Match, props: dict, partial: bool) -> tuple[ToolCall, int]:
    """The call m opened and the position after it (-1: unfinished, while streaming)."""
    name, args, pos = m.group(1), [], m.end()
    while True:
        pos = _ws(text, pos)
        if text.startswith(END, pos):
            return ToolCall(name, "{" + ",".join(args) + "}"), pos + len(END)
        p = _PARAM.match(text, pos)
        try:
            got = _value(text, p.end(), props.get(p.group(1))) if p is not None else None
        except MiniCPM5ParseError:
            if not partial:
                raise
            got = None  # a partial parse never fails: the final one judges
        if got is None:
            break
        value, pos = got
        args.append(f"{dumps(p.group(1))}:{dumps(value)}")
    if not partial:
        raise MiniCPM5ParseError(f"unfinished call of {name}")
    return ToolCall(name, "{" + ",".join(args)), -1


def _value(text: str, i: int, schema: dict | None) -> tuple[object, int] | None:
    """A parameter's value from i and the position after its closing tag; None if it has not closed."""
    if text.startswith(CDATA, i):
        end = text.find(END_CDATA, i)
        if end < 0 or not text.startswith(END_PARAM, end + len(END_CDATA)):
            if end >= 0 and len(text) > end + len(END_CDATA) + len(END_PARAM):
                raise MiniCPM5ParseError("text after a CDATA block")
            return None
        return text[i + len(CDATA):end], end + len(END_CDATA) + len(END_PARAM)
    end = text.find(END_PARAM, i)
    if end < 0:
        return None
    raw = text[i:end]
    if _may_be_string(schema or {}):
        return raw, end + len(END_PARAM)
    try:
        return json.loads(raw), end + len(END_PARAM)
    except ValueError:
        raise MiniCPM5ParseError(f"not JSON: {raw!r}") from None


def _may_be_string(schema: dict) -> bool:
    alts = schema.get("anyOf") or schema.get("oneOf")
    if alts:
        return any(_may_be_string(a) for a in alts if isinstance(a, dict))
    types = schema_types(schema)
    return "string" in types or not types


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """Calls of `functions` (several when parallel); lazy on `<function name="` unless one is required."""
    # plain text holds no `<` (the template asks for CDATA then): a lazy text ending at the first
    # </param> would also end a CDATA block that holds one
    g.rule("cpm_text", f"/[^<]*/ {_lit(END_PARAM)}")
    g.rule("cpm_cdata[lazy]", f"{_lit(CDATA)} LAZY_TEXT {_lit(END_CDATA + END_PARAM)}")
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        params = []
        for j, (key, schema) in enumerate(props.items()):
            head = _lit(f'<param name={json.dumps(key, ensure_ascii=False)}>')
            value = "(cpm_cdata | cpm_text)" if _may_be_string(schema) else f"{json_rule(schema)} {_lit(END_PARAM)}"
            params.append(g.rule(f"cpm_{k}_{j}", f"{head} {value}"))
        body = f"(({' | '.join(params)}) {WS})*" if params else ""
        alts.append(g.rule(f"cpm_{k}", f"{_lit(fn['name'] + chr(34) + '>')} {body} {_lit(END)}"))
    open_ = marker(OPEN)
    one = f"({' | '.join(alts)})"
    g.rule("calls", f"{one} ({WS} {open_.lark()} {one})*" if parallel else one)
    return g.forced(f"{WS} {open_.lark()} calls", after) if required else g.lazy([open_], "calls")


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
