"""IBM Granite 3.x's tool calls: a marker, then a JSON list of calls; reading them and their grammar.

    Let me check.<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]

(Granite 4.x writes Hermes' `<tool_call>` JSON instead, which toolcall_formats.py reads.) The
template asks for the list "only", yet text before the marker is kept as content. The thinking
block is reasoning.py's `<think>`; the `<response>` wrapper the template asks for when thinking
stays in the content, as llama-server leaves it. While streaming, a call is announced once its
name is complete.
"""

from __future__ import annotations

from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import Node, NotJSON, canonical, parse_prefix
from .reasoning import partial_suffix

CALLS = "<|tool_call|>"


class GraniteParseError(ValueError):
    pass


def parse(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    at = text.find(CALLS)
    if at < 0:
        return (text[:partial_suffix(text, CALLS)] if partial else text), []
    content = text[:at]
    try:
        node = parse_prefix(text, at + len(CALLS), final=not partial)
    except NotJSON as e:
        if partial:
            return content, []
        raise GraniteParseError(f"malformed tool calls: {e}") from None
    if node is None:
        return content, []
    if node.kind != "arr":
        if partial:
            return content, []
        raise GraniteParseError("the tool calls must be a JSON list")
    calls = [c for c in (_call(n) for n in node.items) if c is not None]
    if not partial and (not node.complete or text[node.end:].strip() or len(calls) != len(node.items)):
        raise GraniteParseError("malformed tool call list")
    return content, calls


def _call(node: Node) -> ToolCall | None:
    if node.kind != "obj":
        return None
    name, args, ident = node.get("name"), node.get("arguments"), node.get("id")
    if name is None or name.kind != "str" or not name.complete or not name.value:
        return None
    if args is None:
        arguments = "{}" if node.complete else ""
    elif args.kind == "str":  # arguments written as a JSON string: its text is the arguments
        arguments = args.value
    else:
        arguments = canonical(args)
    return ToolCall(name.value, arguments, ident.value if ident and ident.kind == "str" and ident.complete else "")


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """The marker and a list of calls of `functions`; lazy on the marker unless a call is required."""
    trig = marker(CALLS)
    items = [{"type": "object", "properties": {"name": {"type": "string", "const": fn["name"]},
                                               "arguments": fn.get("parameters") or {"type": "object"}},
              "required": ["name", "arguments"], "additionalProperties": False} for fn in functions]
    arr: dict = {"type": "array", "items": items[0] if len(items) == 1 else {"anyOf": items}, "minItems": 1}
    if not parallel:
        arr["maxItems"] = 1
    g.rule("calls", f"{WS} {json_rule(arr)}")
    return g.forced(f"{WS} {trig.lark()} calls", after) if required else g.lazy([trig], "calls")
