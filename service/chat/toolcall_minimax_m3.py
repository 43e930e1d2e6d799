"""MiniMax M3's tool calls: invokes whose arguments are XML elements named after the parameters,
every tag behind the namespace token `]<]minimax[>[`; reading them and their grammar.

    ]<]minimax[>[<tool_call>
    ]<]minimax[>[<invoke name="get_weather">]<]minimax[>[<city>Paris]<]minimax[>[</city>]<]minimax[>[</invoke>
    ]<]minimax[>[</tool_call>

The template writes a value by the tool's schema (llama.cpp reads it back so): a string (or a
union with a string alternative) as its text, an object with properties as one element per key,
an array as `<item>` elements, anything else as JSON; a union takes its first alternative that
reads. Thoughts are `<mm:think>` blocks (reasoning.py); a turn without them starts with a bare
`</mm:think>`, which is no content. While streaming, a call is announced once its name's quote
closes and grows argument by argument.
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

NS = "]<]minimax[>["
BLOCK, BLOCK_END, INVOKE_END, ITEM, ITEM_END = (NS + "<tool_call>", NS + "</tool_call>", NS + "</invoke>",
                                                NS + "<item>", NS + "</item>")
BARE_CLOSE = "</mm:think>"
_INVOKE = re.compile(re.escape(NS) + r'<invoke name="([^"]+)">')
_ELEMENT = re.compile(re.escape(NS) + r"<([^<>/]+)>")


class MiniMaxM3ParseError(ValueError):
    pass


class _More(Exception):
    """The text ends inside a value (only while streaming)."""


def recognise(source: str) -> bool:
    return all(m in source for m in (NS, "<tool_call>", "<invoke name="))


def parse(text: str, partial: bool, schemas: dict | None) -> tuple[str, list[ToolCall]]:
    """Read with or without tools (the bare closer is no content either way); calls only with them."""
    if text.startswith(BARE_CLOSE):
        text = text[len(BARE_CLOSE):]
    elif partial and BARE_CLOSE.startswith(text):
        return "", []
    if schemas is None:
        return text, []
    at = text.find(BLOCK)
    if at < 0:
        return (text[:partial_suffix(text, BLOCK)] if partial else text), []
    content, calls, pos = text[:at], [], at + len(BLOCK)
    while True:
        pos = _ws(text, pos)
        if text.startswith(BLOCK_END, pos):
            pos = _ws(text, pos + len(BLOCK_END))
            if pos < len(text) and not partial:
                raise MiniMaxM3ParseError("text after the tool calls")
            return content, calls
        m = _INVOKE.match(text, pos)
        if m is None:
            if partial:
                return content, calls
            raise MiniMaxM3ParseError("expected an invoke or the end of the block")
        props = ((schemas or {}).get(m.group(1)) or {}).get("properties") or {}
        call, pos = _invoke(text, m, props, partial)
        calls.append(call)
        if pos < 0:
            return content, calls


def _invoke(text: str, m: re.Match, props: dict, partial: bool) -> tuple[ToolCall, int]:
    """The call whose invoke tag m matched, and the position after it (-1: unfinished)."""
    args, pos = [], m.end()
    try:
        while True:
            pos = _ws(text, pos)
            if text.startswith(INVOKE_END, pos):
                return ToolCall(m.group(1), "{" + ",".join(args) + "}"), pos + len(INVOKE_END)
            key, value, pos = _element(text, pos, props, INVOKE_END)
            args.append(f"{dumps(key)}:{dumps(value)}")
    except (_More, MiniMaxM3ParseError) as e:
        if not partial:
            raise MiniMaxM3ParseError(f"unfinished call of {m.group(1)}") if isinstance(e, _More) else e from None
        return ToolCall(m.group(1), "{" + ",".join(args)), -1  # a partial parse never fails: the final one judges


def _element(text: str, pos: int, props: dict, close: str) -> tuple[str, object, int]:
    e = _ELEMENT.match(text, pos)
    if e is None:
        tail = text[pos:]
        if any(w.startswith(tail) for w in (close, NS + "<")) or (tail.startswith(NS + "<") and ">" not in tail):
            raise _More
        raise MiniMaxM3ParseError("expected an argument element")
    key = e.group(1)
    value, pos = _value(text, e.end(), props.get(key) or {}, f"{NS}</{key}>")
    return key, value, pos


def _value(text: str, pos: int, schema: dict, close: str) -> tuple[object, int]:
    """The value from pos up to its closing tag, read by its schema; and the position after the tag."""
    if _may_be_string(schema):
        return _until(text, pos, close), text.index(close, pos) + len(close)
    alts = schema.get("anyOf") or schema.get("oneOf")
    if alts:
        for alt in alts:
            try:
                return _value(text, pos, alt, close)
            except MiniMaxM3ParseError:
                continue
        raise MiniMaxM3ParseError("no alternative of the union reads")
    types = schema_types(schema)
    if "object" in types and schema.get("properties"):
        obj = {}
        while not text.startswith(close, pos := _ws(text, pos)):
            key, obj[key], pos = _element(text, pos, schema["properties"], close)
        return obj, pos + len(close)
    if "array" in types:
        items = []
        while not text.startswith(close, pos := _ws(text, pos)):
            if not text.startswith(ITEM, pos):
                if any(w.startswith(text[pos:]) for w in (close, ITEM)):
                    raise _More
                raise MiniMaxM3ParseError("expected an <item>")
            item, pos = _value(text, pos + len(ITEM), schema.get("items") or {}, ITEM_END)
            items.append(item)
        return items, pos + len(close)
    raw = _until(text, pos, close)
    try:
        return json.loads(raw), pos + len(raw) + len(close)
    except ValueError:
        raise MiniMaxM3ParseError(f"not JSON: {raw!r}") from None


def _until(text: str, pos: int, close: str) -> str:
    end = text.find(close, pos)
    if end < 0:
        raise _More
    return text[pos:end]


def _may_be_string(schema: dict) -> bool:
    """A string, a union with a string alternative, or a value the schema says nothing of."""
    alts = schema.get("anyOf") or schema.get("oneOf")
    if alts:
        return any(_may_be_string(a) for a in alts if isinstance(a, dict))
    types = schema_types(schema)
    return "string" in types or not types


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """A block of invokes of `functions` (several when parallel), values written by their schemas;
    lazy on the block's opener unless a call is required."""
    ns = marker(NS).lark()
    rules = _Rules(g, ns)
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        members = rules.members(f"m3_{k}", props)
        head = f'{ns} {_lit("<invoke name=" + json.dumps(fn["name"], ensure_ascii=False) + ">")}'
        alts.append(g.rule(f"m3_{k}", f"{head} {members} {WS} {ns} {_lit('</invoke>')}"))
    one = f"{WS} ({' | '.join(alts)})"
    g.rule("calls", f"({one}){'+' if parallel else ''} {WS} {ns} {_lit('</tool_call>')}")
    open_ = f"{ns} {_lit('<tool_call>')}"
    if required:  # thoughts first, or the bare closer of a turn without them
        think, close = marker("<mm:think>").lark(), marker(BARE_CLOSE).lark()
        thoughts = f"({think} {_text_until(g, 'm3_thoughts', close)} | {close})?"
        return g.forced(f"{thoughts} {WS} {open_} calls", after)
    if marker(NS).token is not None:  # the token opens only tool-call tags, the block's first
        return g.lazy([marker(NS)], f"{_lit('<tool_call>')} calls")
    return g.lazy([marker(BLOCK)], "calls")


class _Rules:
    """Grammar rules for values by their schemas, named after where they sit."""

    def __init__(self, g: LazyGrammar, ns: str):
        self.g, self.ns, self.n = g, ns, 0

    def members(self, name: str, props: dict) -> str:
        elements = [self.element(f"{name}_{j}", key, schema) for j, (key, schema) in enumerate(props.items())]
        return f"({WS} ({' | '.join(elements)}))*" if elements else ""

    def element(self, name: str, key: str, schema: dict) -> str:
        close = f"{self.ns} {_lit('</' + key + '>')}"
        return self.g.rule(name, f"{self.ns} {_lit('<' + key + '>')} {self.value(name + 'v', schema, close)}")

    def value(self, name: str, schema: dict, close: str) -> str:
        if _may_be_string(schema):
            # text up to the closing tag; the namespace token cannot sit in a lazy terminal
            return _text_until(self.g, name, close)
        alts = schema.get("anyOf") or schema.get("oneOf")
        if alts:
            return "(" + " | ".join(self.value(f"{name}{i}", a, close) for i, a in enumerate(alts)) + ")"
        types = schema_types(schema)
        if "object" in types and schema.get("properties"):
            return f"{self.members(name, schema['properties'])} {WS} {close}"
        if "array" in types:
            item = self.value(name + "i", schema.get("items") or {}, f"{self.ns} {_lit('</item>')}")
            return f"({WS} {self.ns} {_lit('<item>')} {item})* {WS} {close}"
        return f"{json_rule(schema)} {close}"


def _text_until(g: LazyGrammar, name: str, close: str) -> str:
    """Free text up to `close`: a lazy terminal, or plain text when the tag opens with a token
    (a lazy terminal cannot hold one, nor can TEXT)."""
    if close.startswith("<["):
        return f"TEXT? {close}"
    g.rule(f"{name}[lazy]", f"LAZY_TEXT {close}")
    return name


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
