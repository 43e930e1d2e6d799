"""GLM 4.5 / 4.6 / 4.7's tool calls: a name, then tagged key/value pairs; reading them and their grammar.

    <tool_call>get_weather
    <arg_key>city</arg_key>
    <arg_value>Paris</arg_value>
    </tool_call>

GLM 4.6 puts newlines between the tags, GLM 4.7 none; either is read. A value becomes JSON by the
tool's schema as Qwen3-Coder's do (toolcall_xml.typed_value): a string parameter keeps the text,
other types take the JSON the text spells. A call without pairs has no arguments (`{}`). Content
before the calls is kept as written; while streaming, a call is announced once its name is
complete (the first tag after it has begun) and grows pair by pair.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import dumps
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix
from .toolcall_xml import schema_types, typed_value

OPEN, CLOSE = "<tool_call>", "</tool_call>"
KEY, END_KEY, VALUE, END_VALUE = "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"


class GlmParseError(ValueError):
    pass


def parse(text: str, partial: bool, schemas: dict[str, dict]) -> tuple[str, list[ToolCall]]:
    at = text.find(OPEN)
    if at < 0:
        return (text[:partial_suffix(text, OPEN)] if partial else text), []
    content, calls, pos = text[:at], [], at
    while True:
        pos = _ws(text, pos)
        if pos >= len(text):
            return content, calls
        if not text.startswith(OPEN, pos):
            if partial:
                return content, calls
            raise GlmParseError("text after the tool calls")
        call, pos, done = _call(text, pos + len(OPEN), schemas.get, partial)
        if call is not None:
            calls.append(call)
        if not done:
            return content, calls


def _call(text: str, i: int, schema_of: Callable, partial: bool) -> tuple[ToolCall | None, int, bool]:
    """The call whose name starts at i: (call or None, position after it, whether it closed)."""
    lt = text.find("<", i)
    name = text[i:lt].strip() if lt >= 0 else ""
    if not name:
        if partial:
            return None, len(text), False
        raise GlmParseError("a tool call without a name")
    props = (schema_of(name) or {}).get("properties") or {}
    args: list[str] = []
    pos = lt
    while True:
        pos = _ws(text, pos)
        if text.startswith(CLOSE, pos):
            return ToolCall(name, "{" + ",".join(args) + "}"), pos + len(CLOSE), True
        pair = _pair(text, pos)
        if pair is None:
            break
        key, raw, pos = pair
        args.append(f"{dumps(key)}:{dumps(typed_value(raw, props.get(key)))}")
    if not partial:
        raise GlmParseError(f"unfinished call of {name}")
    return ToolCall(name, "{" + ",".join(args)), len(text), False


call_at = _call  # Ling 3 reads the same calls among its own sections (toolcall_ling3.py)


def _pair(text: str, i: int) -> tuple[str, str, int] | None:
    """<arg_key>k</arg_key> <arg_value>v</arg_value> at i: (key, value text, position after), or None."""
    if not text.startswith(KEY, i):
        return None
    end = text.find(END_KEY, i)
    if end < 0:
        return None
    key = text[i + len(KEY):end].strip()
    j = _ws(text, end + len(END_KEY))
    if not text.startswith(VALUE, j):
        return None
    close = text.find(END_VALUE, j)
    if close < 0:
        return None
    return key, text[j + len(VALUE):close], close + len(END_VALUE)


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """Calls of `functions` with their parameters as tagged pairs; lazy on `<tool_call>` unless one
    is required. A string value is any text up to its closing tag, others JSON of their schema."""
    open_, close = marker(OPEN), marker(CLOSE)
    g.rule("glm_text[lazy]", f"LAZY_TEXT {_lit(END_VALUE)}")
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        pairs = []
        for j, (key, schema) in enumerate(props.items()):
            value = _value_rule(schema)
            pairs.append(g.rule(f"glm_{k}_{j}", f"{WS} {_lit(KEY + key + END_KEY)} {WS} {_lit(VALUE)} {value}"))
        body = f"({' | '.join(pairs)})*" if pairs else ""
        alts.append(g.rule(f"glm_{k}", f"{_lit(fn['name'])} {body} {WS} {close.lark()}"))
    g.rule("block", f"{WS} ({' | '.join(alts)})")  # ends at the closing tag: then only the end of generation
    g.rule("calls", f"block ({WS} {open_.lark()} block)*" if parallel else "block")
    return g.forced(f"{WS} {open_.lark()} calls", after) if required else g.lazy([open_], "calls")


def _value_rule(schema: dict) -> str:
    """A value and its closing tag: the listed strings of an enum, any text for a string, else JSON."""
    choices = schema.get("enum") if isinstance(schema, dict) else None
    if isinstance(schema, dict) and "const" in schema:
        choices = [schema["const"]]
    if isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices):
        return f"({' | '.join(_lit(c) for c in choices)}) {_lit(END_VALUE)}"
    if "string" in schema_types(schema):
        return "glm_text"
    return f"{json_rule(schema)} {_lit(END_VALUE)}"


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
