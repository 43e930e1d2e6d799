"""gpt-oss's harmony output: channels for reasoning, answers and tool calls, read into a message.

The prompt ends with `<|start|>assistant`; the model then writes messages, each a header and a body:

    <|channel|>analysis<|message|>thoughts<|end|>                      -> reasoning_content
    <|start|>assistant<|channel|>final<|message|>the answer            -> content (also commentary
                                                                          without a recipient)
    <|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{...}<|call|>
                                                                       -> a call of f (the recipient may
                                                                          also stand before the channel)

A recipient other than `functions.*` (gpt-oss's built-in tools, container.exec, python) is a call
no client asked for: dropped, as llama-server does; `to=assistant` is no recipient. With reasoning
format none the analysis messages stay in content as written (header, body and `<|end|>`). While
streaming, a tail that may be the start of a marker is held back and a header counts once its
`<|message|>` arrived.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ChatMsg, ToolCall
from .partial_json import NotJSON, canonical, parse_prefix
from .reasoning import partial_suffix

_ENDS = ("<|end|>", "<|call|>", "<|return|>")
_START = "<|start|>assistant"
_RECIPIENT = re.compile(r"to=(\S+?)(?=<\||\s|$)")
_CHANNEL = re.compile(r"<\|channel\|>(\w+)")


def parse(text: str, partial: bool, *, reasoning: bool, tools: bool) -> ChatMsg:
    """The message in `text` (the output after the prompt's `<|start|>assistant`)."""
    content, thoughts, calls, pos = [], [], [], 0
    while pos < len(text):
        if text.startswith(_START, pos):
            pos += len(_START)
            continue
        at = text.find("<|message|>", pos)
        if at < 0:
            if not partial:  # a stray tail without a body: text as the model wrote it
                content.append(text[pos:])
            break
        header, body_start = text[pos:at], at + len("<|message|>")
        end, closer = _end_of(text, body_start)
        body = text[body_start:end]
        if partial and closer is None:
            body = body[:min(partial_suffix(body, w) for w in (*_ENDS, _START))]
        channels = _CHANNEL.findall(header)
        channel = channels[-1] if channels else ""
        to = next((r for r in _RECIPIENT.findall(header) if r != "assistant"), None)
        if to is not None:
            if to.startswith("functions.") and tools:
                call = _call(to[len("functions."):], body, done=closer is not None or not partial)
                if call is not None:
                    calls.append(call)
        elif channel == "analysis":
            if reasoning:
                thoughts.append(body)
            else:
                content.append(f"{header}<|message|>{body}{closer or ''}")
        else:
            content.append(body)
        pos = end + len(closer or "")
    return ChatMsg("".join(content), "\n".join(t for t in thoughts if t), calls)


def _end_of(text: str, i: int) -> tuple[int, str | None]:
    hits = [(text.find(w, i), w) for w in (*_ENDS, _START)]
    hits = [(at, w) for at, w in hits if at >= 0]
    if not hits:
        return len(text), None
    at, w = min(hits)
    return at, (None if w == _START else w)


def _call(name: str, body: str, done: bool) -> ToolCall | None:
    try:
        node = parse_prefix(body, 0, final=done)
    except NotJSON:
        return ToolCall(name, "") if not done else None
    if node is None:
        return ToolCall(name, "")
    return ToolCall(name, canonical(node))


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker]) -> str:
    """Calls in harmony: thoughts in the analysis channel first if the model likes, then
    `<|channel|>commentary to=functions.f <|constrain|>json<|message|>{arguments}<|call|>`.
    Lazy on ` to=functions.` unless a call is required."""
    lit = marker
    alts = []
    for k, fn in enumerate(functions):
        alts.append(g.rule(f"h_{k}", f'{_q(fn["name"])} {WS} ({lit("<|constrain|>").lark()} "json")? '
                                     f'{lit("<|message|>").lark()} {json_rule(fn.get("parameters") or {})}'))
    g.rule("hcall", f"({' | '.join(alts)}) {lit('<|call|>').lark()}")
    g.rule("calls", f"hcall ({lit('<|start|>').lark()} \"assistant\" {lit('<|channel|>').lark()} "
                    f"\"commentary to=functions.\" hcall)*" if parallel else "hcall")
    g.rule("hthink[lazy]", f"LAZY_TEXT {lit('<|end|>').lark()}")
    head = (f"({lit('<|channel|>').lark()} \"analysis\" {lit('<|message|>').lark()} hthink "
            f"{lit('<|start|>').lark()} \"assistant\")? {lit('<|channel|>').lark()} \"commentary to=functions.\"")
    if required:
        return g.forced(f"{head} calls")
    return g.lazy([lit("to=functions.")], "calls")


def _q(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)
