"""Ling 3.0 (Bailing V3) answers: GLM's `<tool_call>` key/value calls inside `<role>` sections.

    <role>ASSISTANT</role>thoughts</think>Checking it now.
    <tool_call>get_time
    <arg_key>city</arg_key>
    <arg_value>Paris</arg_value>
    </tool_call><|role_end|>

The calls are read as GLM's (toolcall_glm.py). Unlike the `<think>` blocks of reasoning.py, the
thoughts keep their whitespace, and when the prompt opened them a call also ends them (llama.cpp's
fixtures show both). Prose after the calls is content too, and the `<|role_end|>` that ends the
turn, should it arrive as text, is dropped. Every answer is read so, tools or not.
"""

from __future__ import annotations

from . import toolcall_glm
from .chatmsg import ChatMsg, ToolCall
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix
from .toolcall_glm import OPEN

ROLE, ROLE_END, THINK, END_THINK = "<role>ASSISTANT</role>", "<|role_end|>", "<think>", "</think>"


class Ling3ParseError(ValueError):
    pass


def recognise(source: str) -> bool:
    return ROLE in source and "<arg_key>" in source


def message(text: str, partial: bool, *, reasoning: bool, opened: bool, schemas: dict | None) -> ChatMsg:
    pos = _ws(text, len(ROLE)) if text.startswith(ROLE) else 0
    if partial and pos == 0 and text and ROLE.startswith(text):
        return ChatMsg("")
    thoughts, explicit = "", text.startswith(THINK, pos)
    if opened or explicit:
        pos += len(THINK) if explicit else 0
        stops = (END_THINK, OPEN) if opened else (END_THINK,)
        hits = [at for w in stops if (at := text.find(w, pos)) >= 0]
        end = min(hits) if hits else len(text)
        thoughts = text[pos:end]
        if not hits and partial:
            thoughts = thoughts[:min(partial_suffix(thoughts, w) for w in stops)]
        pos = _ws(text, end + len(END_THINK)) if text.startswith(END_THINK, end) else end
    rest = _unended(text[pos:], partial)
    head = "" if reasoning else thoughts
    if schemas is None:
        return ChatMsg(head + rest, thoughts if reasoning else "")
    content, calls = _calls(rest, partial, schemas)
    return ChatMsg(head + content, thoughts if reasoning else "", calls)


def _unended(text: str, partial: bool) -> str:
    """The text less the turn's end marker (and, while streaming, a tail that may become it)."""
    if text.endswith(ROLE_END):
        return text[:-len(ROLE_END)]
    return text[:partial_suffix(text, ROLE_END)] if partial else text


def _calls(text: str, partial: bool, schemas: dict) -> tuple[str, list[ToolCall]]:
    at = text.find(OPEN)
    if at < 0:
        return (text[:partial_suffix(text, OPEN)] if partial else text), []
    content, calls, pos = text[:at], [], at
    while True:
        call, end, done = toolcall_glm.call_at(text, pos + len(OPEN), schemas.get, partial)
        if call is not None:
            calls.append(call)
        if not done:
            return content, calls
        pos = _ws(text, end)
        if not text.startswith(OPEN, pos):
            tail = text[end:]
            if partial:
                tail = tail[:partial_suffix(tail, OPEN)]
            return content + (tail if tail.strip() else ""), calls
