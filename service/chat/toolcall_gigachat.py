"""GigaChat 3 and 3.1's tool call: a marker, then one JSON object; reading it and its grammar.

    Let me check.<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": "get_weather", "arguments": {"city": "Paris"}}
    Let me check.<|function_call|>{"name": "get_weather", "arguments": {"city": "Paris"}}

GigaChat 3 writes the call as a message of the `function call` role; 3.1 has a token for it
(llama.cpp reads 3.0 with a parser of its own and 3.1 with its automatic one, its tests giving both
outputs). One call per answer: the template renders only a message's first call. Text before the
marker is content as written. While streaming, the call is announced once its name is complete.
"""

from __future__ import annotations

from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import NotJSON, canonical, parse_prefix
from .reasoning import partial_suffix

V3 = "<|message_sep|>\n\nfunction call<|role_sep|>\n"
V31 = "<|function_call|>"


class GigaChatParseError(ValueError):
    pass


def recognise(source: str) -> bool:
    return "<|role_sep|>" in source and "<|message_sep|>" in source


def parse(text: str, partial: bool, mark: str) -> tuple[str, list[ToolCall]]:
    at = text.find(mark)
    if at < 0:
        return (text[:partial_suffix(text, mark)] if partial else text), []
    content = text[:at]
    try:
        node = parse_prefix(text, at + len(mark), final=not partial)
    except NotJSON as e:
        if partial:
            return content, []
        raise GigaChatParseError(f"malformed tool call: {e}") from None
    if node is None or node.kind != "obj":
        if partial:
            return content, []
        raise GigaChatParseError("the tool call must be a JSON object")
    name, args = node.get("name"), node.get("arguments")
    if name is None or name.kind != "str" or not name.complete or not name.value:
        if partial:
            return content, []
        raise GigaChatParseError("a tool call needs a name")
    if not partial and (not node.complete or text[node.end:].strip() or args is None or args.kind != "obj"):
        raise GigaChatParseError("malformed tool call")
    arguments = canonical(args) if args is not None and args.kind == "obj" else ""
    return content, [ToolCall(name.value, arguments)]


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, mark: str, required: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """The marker and one call of `functions`; lazy on the marker unless a call is required."""
    if mark == V31:
        head, trig = marker(V31).lark(), marker(V31)
    else:  # its separators may be tokens of their own, the role's name is text
        head = f'{marker("<|message_sep|>").lark()} "\\n\\n" "function call" {marker("<|role_sep|>").lark()} "\\n"'
        trig = marker(V3)
    calls = [{"type": "object", "properties": {"name": {"type": "string", "const": fn["name"]},
                                               "arguments": fn.get("parameters") or {"type": "object"}},
              "required": ["name", "arguments"], "additionalProperties": False} for fn in functions]
    g.rule("calls", json_rule(calls[0] if len(calls) == 1 else {"anyOf": calls}))
    if required:
        return g.forced(f"{WS} {head} calls", after)
    sep = marker("<|message_sep|>")
    if mark == V3 and sep.token is not None:
        # the token also ends a plain message (the template writes it with two newlines): the
        # call's role follows it, or nothing
        g.rule("gc_after", f'/\\n{{0,2}}/ ("function call" {marker("<|role_sep|>").lark()} "\\n" calls)?')
        return g.lazy([sep], "gc_after")
    return g.lazy([trig], "calls")
