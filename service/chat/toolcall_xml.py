"""Qwen3-Coder's XML tool calls (also Qwen3.5, Nemotron 3 Nano, StepFun 3.5): reading them and their grammar.

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

A parameter's value is the text between `<parameter=name>\\n` and `\\n</parameter>` (one newline off
each side, the rest kept). It becomes a JSON value by the tool's schema, as llama.cpp reads it: a
string parameter keeps the text (`null` is null where the type allows null), a union with string
takes the JSON value when the text is JSON and the text otherwise, any other type the JSON value.
The first call may come without its `<tool_call>`. Content before the calls is kept as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import dumps
from .reasoning import partial_suffix

_OPEN = re.compile(r"(?:<tool_call>[ \t\n]*)?<function=")
_WORDS = ("<tool_call>", "<function=")
_PARAM = "<parameter="
_END_PARAM = "</parameter>"
_NL = "\n"


class XmlParseError(ValueError):
    pass


def parse(text: str, partial: bool, schemas: dict[str, dict] | None = None) -> tuple[str, list[ToolCall]]:
    """(content, calls). A final parse raises XmlParseError on an unfinished or malformed call; a
    partial one returns the calls so far (an unfinished call with the parameters it has closed,
    its arguments an unclosed prefix of the final ones) and holds back a tail that may open one."""
    schemas = schemas or {}
    m = _OPEN.search(text)
    if m is None:
        if not partial:
            return text, []
        cut = min([partial_suffix(text, w) for w in _WORDS] + [_open_tail(text)])
        return text[:cut], []
    content, calls, pos = text[:m.start()], [], m.start()
    while True:
        m = _OPEN.match(text, pos)
        if m is None:
            if partial:  # what follows is held back until it is a call (or the end shows it is not)
                break
            raise XmlParseError("text after the tool calls")
        call, pos, done = _call(text, m.end(), schemas.get, partial)
        if call is not None:
            calls.append(call)
        if not done:
            break
        pos = _skip_ws(text, pos)
        if pos >= len(text):
            break
    return content, calls


def _open_tail(text: str) -> int:
    """Where a `<tool_call>` that may still open a call begins (the rest is blank or starts `<function=`)."""
    at = text.rfind("<tool_call>")
    return at if at >= 0 and "<function=".startswith(text[at + len("<tool_call>"):].lstrip()) else len(text)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n":
        i += 1
    return i


def _call(text: str, i: int, schema_of: Callable, partial: bool) -> tuple[ToolCall | None, int, bool]:
    """The call whose name starts at i: (call or None, position after it, whether it closed)."""
    gt = text.find(">", i)
    if gt < 0:
        if partial:
            return None, len(text), False
        raise XmlParseError("unfinished function name")
    name = text[i:gt]
    props = (schema_of(name) or {}).get("properties") or {}
    args: list[str] = []
    pos = gt + 1
    while True:
        pos = _skip_ws(text, pos)
        if text.startswith(_PARAM, pos):
            gt = text.find(">", pos)
            end = text.find(_END_PARAM, gt + 1) if gt >= 0 else -1
            if end < 0:
                break
            key = text[pos + len(_PARAM):gt]
            raw = text[gt + 1:end]
            raw = raw[1:] if raw.startswith("\n") else raw
            raw = raw[:-1] if raw.endswith("\n") else raw
            args.append(f"{dumps(key)}:{dumps(typed_value(raw, props.get(key)))}")
            pos = end + len(_END_PARAM)
        elif text.startswith("</function>", pos):
            pos = _skip_ws(text, pos + len("</function>"))
            if text.startswith("</tool_call>", pos) or (partial and "</tool_call>".startswith(text[pos:])):
                pos = min(len(text), pos + len("</tool_call>"))
            return ToolCall(name, "{" + ",".join(args) + "}"), pos, True
        else:
            break
    if not partial:
        raise XmlParseError(f"unfinished call of {name}")
    return ToolCall(name, "{" + ",".join(args)), len(text), False


def schema_types(schema: dict | None) -> list[str]:
    if not isinstance(schema, dict):
        return []
    t = schema.get("type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return [x for x in t if isinstance(x, str)]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return ["string"]
    return []


def typed_value(raw: str, schema: dict | None):
    """A parameter's text as the JSON value its schema asks for (see the module's docstring)."""
    types = schema_types(schema)
    if "string" in types:
        if raw == "null" and "null" in types:
            return None
        if set(types) <= {"string", "null"}:
            return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """Calls of `functions` in this format: lazy on `<tool_call>` unless a call is required."""
    open_, close = marker("<tool_call>"), marker("</tool_call>")
    g.rule("xml_text[lazy]", f"LAZY_TEXT {_lit(_NL + _END_PARAM)}")  # a string value ends at its closing tag
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        params = []
        for j, (key, schema) in enumerate(props.items()):
            value = "xml_text" if "string" in schema_types(schema) else f"{json_rule(schema)} {_lit(_NL + _END_PARAM)}"
            params.append(g.rule(f"p_{k}_{j}", f"{_lit(f'{_PARAM}{key}>' + _NL)} {value} {_lit(_NL)}"))
        body = f"({' | '.join(params)})*" if params else ""
        head = _lit(f"<function={fn['name']}>" + "\n")
        alts.append(g.rule(f"fn_{k}", f"{head} {body} {_lit('</function>')}"))
    g.rule("block", f"{WS} ({' | '.join(alts)}) {WS} {close.lark()} {WS}")
    g.rule("calls", f"block ({open_.lark()} block)*" if parallel else "block")
    return g.forced(f"{WS} {open_.lark()} calls", after) if required else g.lazy([open_], "calls")


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
