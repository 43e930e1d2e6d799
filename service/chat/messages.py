"""Checking the OpenAI-style messages a client sends, and shaping them the way a template reads.

A message is an object with a string `role` and a `content` that is a string, an array of text
parts `{"type": "text", "text": ...}`, or null/absent on an assistant message carrying
`tool_calls`. Every other field (tool_calls, tool_call_id, name, reasoning_content) passes through
untouched for the templates that use it. Problems raise ValueError naming the field, e.g.
"messages[2].content[0].type: ...", which the HTTP layer answers with a 400.
"""

from __future__ import annotations

from typing import Any


# OpenAI's roles, its older "function" one, and Llama 3's tool-output role.
ROLES = ("system", "developer", "user", "assistant", "tool", "function", "ipython")


def normalize(messages: Any, typed: bool) -> list[dict]:
    """Validated copies of `messages`. Text-part arrays become one string joined with newlines,
    as llama-server does, unless the template reads typed parts only (`typed`): then string
    contents become one-part arrays instead."""
    if not isinstance(messages, list):
        raise ValueError("messages: expected an array of message objects")
    return [_message(m, f"messages[{i}]", typed) for i, m in enumerate(messages)]


def _message(msg: Any, where: str, typed: bool) -> dict:
    if not isinstance(msg, dict):
        raise ValueError(f"{where}: expected an object with 'role' and 'content'")
    role = msg.get("role")
    if not isinstance(role, str) or not role:
        raise ValueError(f"{where}.role: expected a non-empty string")
    if role not in ROLES:  # a typo here would otherwise render as a turn the model never saw in training
        raise ValueError(f"{where}.role: unknown role {role!r} (expected one of {', '.join(ROLES)})")
    out = dict(msg)
    if msg.get("content") is None and not msg.get("tool_calls"):  # null reads as missing, as llama-server
        raise ValueError(f"{where}.content: missing (a message needs 'content' or 'tool_calls')")
    content = msg.get("content")
    if content is None:
        out["content"] = None
    elif isinstance(content, str):
        out["content"] = [{"type": "text", "text": content}] if typed else content
    elif isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "media_marker" for p in content):
        text = _join_media(content, where)  # llama.cpp: one string with the images' markers
        out["content"] = [{"type": "text", "text": text}] if typed else text
    elif isinstance(content, list):
        texts = [_text_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
        out["content"] = ([{"type": "text", "text": t} for t in texts] if typed
                          else "\n".join(texts))
    else:
        raise ValueError(f"{where}.content: expected a string, an array of text parts, or null")
    return out


def _join_media(content: list, where: str) -> str:
    """Text parts joined by newlines, none before or after a media marker (service.api.media put the
    markers where the images were), as llama.cpp joins a message's parts."""
    text, after_marker = "", False
    for j, p in enumerate(content):
        if isinstance(p, dict) and p.get("type") == "media_marker":
            text += str(p.get("text", ""))
            after_marker = True
            continue
        t = _text_part(p, f"{where}.content[{j}]")
        text += ("\n" if text and not after_marker else "") + t
        after_marker = False
    return text


def _text_part(part: Any, where: str) -> str:
    if not isinstance(part, dict):
        raise ValueError(f"{where}: expected an object {{\"type\": \"text\", \"text\": ...}}")
    kind = part.get("type")
    if kind != "text":
        raise ValueError(f"{where}.type: unsupported content part type {kind!r} "
                         "(only 'text' is supported)")
    text = part.get("text")
    if not isinstance(text, str):
        raise ValueError(f"{where}.text: expected a string")
    return text


def text_size(messages: list[dict], *extra: Any) -> int:
    """Rough size in characters of what a client sent: scales the output bound, since a long
    conversation legitimately renders to a long prompt."""
    return sum(len(str(m)) for m in messages) + sum(len(str(x)) for x in extra if x)
