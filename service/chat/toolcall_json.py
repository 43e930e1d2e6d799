"""JSON tool-call objects: one call read out of a (maybe unfinished) JSON object, and the formats
whose calls are JSON alone, Mistral Nemo's array and the generic {"tool_call": ...} answer
(toolcall_formats.py dispatches to them; Hermes' and Llama 3.x's tagged and bare objects use the
same reading of a call).
"""

from __future__ import annotations

import json

from .chatmsg import ToolCall
from .partial_json import Node, NotJSON, canonical, parse_prefix
from .reasoning import partial_suffix


class ToolParseError(ValueError):
    pass


def call_of(node: Node, args_key: str = "arguments") -> ToolCall | None:
    """The call an object (maybe unfinished) describes, once its name is complete; None before."""
    name = node.get("name")
    if name is None or name.kind != "str" or not name.complete or not name.value:
        return None
    args = node.get(args_key) or node.get("arguments")
    if args is None:
        arguments = "{}" if node.complete else ""
    elif args.kind == "str":  # arguments given as a JSON string: its text is the arguments
        arguments = args.value
    else:
        arguments = canonical(args)
    ident = node.get("id")
    return ToolCall(name.value, arguments, ident.value if ident and ident.kind == "str" and ident.complete else "")


def json_at(text: str, i: int, partial: bool) -> Node | None:
    try:
        return parse_prefix(text, i, final=not partial)
    except NotJSON as e:
        if partial:
            return None
        raise ToolParseError(f"malformed tool call JSON: {e}") from None


# -- Mistral Nemo --------------------------------------------------------------------------------

_NEMO = "[TOOL_CALLS]"


def nemo(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    at = text.find(_NEMO)
    if at >= 0:
        content, start = text[:at], at + len(_NEMO)
    elif text.lstrip().startswith("[{"):
        # The prefix is a control token in Mistral's vocabulary and does not always survive
        # detokenization; an output that is a bare array of calls is read the same way.
        content, start = "", 0
    else:
        return (text[:partial_suffix(text, _NEMO)] if partial else text), []
    node = json_at(text, start, partial)
    if node is None:
        return content, []
    if node.kind != "arr":
        if partial:
            return content, []
        raise ToolParseError("[TOOL_CALLS] must be followed by an array of calls")
    calls = [c for c in (call_of(n) for n in node.items if n.kind == "obj") if c is not None]
    if not partial and (not node.complete or text[node.end:].strip()):
        raise ToolParseError("malformed [TOOL_CALLS] array")
    return content, calls


# -- Generic JSON ---------------------------------------------------------------------------------

def generic(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    node = json_at(text, 0, partial)
    if node is None:
        if not partial and text.strip():
            raise ToolParseError("expected a JSON object")
        return "", []
    if node.kind != "obj":
        if partial:
            return "", []
        raise ToolParseError("expected a JSON object")
    if not partial and (not node.complete or text[node.end:].strip()):
        raise ToolParseError("malformed JSON response")
    many, one, resp = node.get("tool_calls"), node.get("tool_call"), node.get("response")
    if many is not None and many.kind == "arr":
        return "", [c for c in (call_of(n) for n in many.items if n.kind == "obj") if c is not None]
    if one is not None and one.kind == "obj":
        call = call_of(one)
        return "", [call] if call is not None else []
    if resp is not None:
        if resp.kind == "str":
            return resp.value, []
        if resp.complete:
            return json.dumps(resp.python(), indent=2, ensure_ascii=False), []
        return "", []
    if not partial:
        raise ToolParseError('expected "tool_call", "tool_calls" or "response"')
    return "", []
