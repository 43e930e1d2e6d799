"""Command R7B's answers (Cohere, 12-2024): text and tool calls inside its markers; reading them and their grammar.

    <|START_THINKING|>plan<|END_THINKING|><|START_RESPONSE|>text<|END_RESPONSE|>
    <|START_THINKING|>plan<|END_THINKING|><|START_ACTION|>[
        {"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}}
    ]<|END_ACTION|>

The thinking block is reasoning.py's (its tags are this family's). The response markers frame
every answer, with or without tools, and are dropped from the content; text outside them is kept
(with --reasoning-format none that is the thinking block, tags and all, as llama-server keeps it).
Cohere2 MoE (North Code) writes the same with `<|START_TEXT|>`/`<|END_TEXT|>` around its text, and
its prompt opens the thinking block, which ends at its closer or at the text's or action's marker.
An action is a JSON array of calls; each call's `tool_call_id` is its id. While streaming, a call
is announced once its name is complete and its id is known (or cannot come any more), so that
the id sent first is the final one.
"""

from __future__ import annotations

from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import Node, NotJSON, canonical, parse_prefix
from .reasoning import partial_suffix

RESPONSE, END_RESPONSE = "<|START_RESPONSE|>", "<|END_RESPONSE|>"
ACTION, END_ACTION = "<|START_ACTION|>", "<|END_ACTION|>"
THINK, END_THINK = "<|START_THINKING|>", "<|END_THINKING|>"
TEXT, END_TEXT = "<|START_TEXT|>", "<|END_TEXT|>"  # Cohere2 MoE's response markers


class CommandR7BParseError(ValueError):
    pass


def parse(text: str, partial: bool, tools: bool = True, markers: tuple[str, str] = (RESPONSE, END_RESPONSE)
          ) -> tuple[str, list[ToolCall]]:
    """tools False: the request has none, so an action is malformed. markers: the response's."""
    start, end_mark = markers
    content, calls, pos = [], [], 0
    while True:
        starts = [(at, m) for m in (start, ACTION) if (at := text.find(m, pos)) >= 0]
        if not starts:
            rest = text[pos:]
            if partial:
                rest = rest[:min(partial_suffix(rest, start), partial_suffix(rest, ACTION))]
            content.append(rest)
            return "".join(content), calls
        at, mark = min(starts)
        content.append(text[pos:at])
        pos = at + len(mark)
        if mark == start:
            end = text.find(end_mark, pos)
            if end < 0:  # the response runs to the end of the output
                body = text[pos:]
                content.append(body[:partial_suffix(body, end_mark)] if partial else body)
                return "".join(content), calls
            content.append(text[pos:end])
            pos = end + len(end_mark)
            continue
        if not tools:
            if partial:
                return "".join(content), calls
            raise CommandR7BParseError("an action without tools")
        pos, done = _action(text, pos, partial, calls)
        if not done:
            return "".join(content), calls


def _action(text: str, i: int, partial: bool, calls: list[ToolCall]) -> tuple[int, bool]:
    """Reads the array of calls at i into `calls`: (position after END_ACTION, whether it closed)."""
    try:
        node = parse_prefix(text, i, final=not partial)
    except NotJSON as e:
        if partial:
            return len(text), False
        raise CommandR7BParseError(f"malformed action: {e}") from None
    if node is None:
        return len(text), False
    if node.kind != "arr":
        if partial:
            return len(text), False
        raise CommandR7BParseError("an action must be a JSON array")
    for item in node.items:
        call = _call(item, partial)
        if call is None:
            if partial:
                break
            raise CommandR7BParseError("a call needs a tool_name")
        calls.append(call)
    if not node.complete:
        if not partial:
            raise CommandR7BParseError("unfinished action")
        return len(text), False
    j = node.end
    while j < len(text) and text[j] in " \t\n":
        j += 1
    if text.startswith(END_ACTION, j):
        return j + len(END_ACTION), True
    if partial or j >= len(text):  # the closing marker is still coming, or the output stopped at it
        return len(text), False
    raise CommandR7BParseError("expected <|END_ACTION|>")


def _call(item: Node, partial: bool) -> ToolCall | None:
    if item.kind != "obj":
        return None
    name, ident, params = item.get("tool_name"), item.get("tool_call_id"), item.get("parameters")
    if name is None or name.kind != "str" or not name.complete or not name.value:
        return None
    if partial and not item.complete and ident is None and params is None:
        return None  # its id may still come: the stream must announce the call with the final one
    if ident is not None and (ident.kind != "str" or not ident.complete) and not item.complete:
        return None
    if params is None:
        arguments = "{}" if item.complete else ""
    elif params.kind != "obj":
        if not partial:
            raise CommandR7BParseError("parameters must be an object")
        return None
    else:
        arguments = canonical(params)
    return ToolCall(name.value, arguments, ident.value if ident is not None and ident.kind == "str" else "")


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None) -> str:
    """An action of calls of `functions`, each numbered; lazy on the action marker unless a call is
    required, then the answer may still think first (the template asks the model to plan)."""
    action, end_action, think, end_think = (marker(m) for m in (ACTION, END_ACTION, THINK, END_THINK))
    items = [{"type": "object", "properties": {
        "tool_call_id": {"type": "string", "pattern": "^[0-9]{1,10}$"},
        "tool_name": {"type": "string", "const": fn["name"]},
        "parameters": fn.get("parameters") or {"type": "object"}},
        "required": ["tool_call_id", "tool_name", "parameters"], "additionalProperties": False} for fn in functions]
    arr: dict = {"type": "array", "items": items[0] if len(items) == 1 else {"anyOf": items}, "minItems": 1}
    if not parallel:
        arr["maxItems"] = 1
    g.rule("calls", f"{WS} {json_rule(arr)} {WS} {end_action.lark()}")
    if not required:
        return g.lazy([action], "calls")
    g.rule("r7b_thoughts[lazy]", f"LAZY_TEXT {end_think.lark()}")
    return g.forced(f"({think.lark()} r7b_thoughts)? {WS} {action.lark()} calls", after)
