"""Anthropic's Messages request, typed, and its conversion into a chat request (llama-server's
convert_anthropic_to_oai):

    system (string or text blocks)        -> a system message
    text / tool_use / tool_result blocks  -> text parts / assistant tool_calls / `tool` messages
    thinking blocks (assistant)           -> the message's reasoning_content
    tools [{name, description, input_schema}], tool_choice {auto | any | tool+name | none}
    stop_sequences, max_tokens (4096 when absent, as llama-server), temperature, top_p, top_k
    thinking {"type": "disabled"}         -> chat_template_kwargs enable_thinking false
"""

from __future__ import annotations

import json
from typing import Any, Literal

from service.api.errors import bad_request
from service.api.protocol import Int, Request
from service.api.protocol_openai import ChatRequest

DEFAULT_MAX_TOKENS = 4096


class TextBlock(Request, tag="text", tag_field="type"):
    text: str


class ImageBlock(Request, tag="image", tag_field="type"):
    source: dict[str, Any] | None = None


class DocumentBlock(Request, tag="document", tag_field="type"):
    source: dict[str, Any] | None = None


class ToolUseBlock(Request, tag="tool_use", tag_field="type"):
    name: str
    id: str | None = ""
    input: dict[str, Any] | None = {}


class ToolResultBlock(Request, tag="tool_result", tag_field="type"):
    tool_use_id: str | None = ""
    content: str | list[TextBlock] | None = None
    is_error: bool | None = False


class ThinkingBlock(Request, tag="thinking", tag_field="type"):
    thinking: str | None = ""
    signature: str | None = ""


class RedactedThinkingBlock(Request, tag="redacted_thinking", tag_field="type"):
    data: str | None = ""


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class Message(Request):
    role: str  # user or assistant (checked in to_chat, with llama-server's words)
    content: str | list[Block]


class AnthropicTool(Request):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class AnthropicToolChoice(Request):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None


class Thinking(Request):
    type: str | None = None
    budget_tokens: Int | None = None


class MessagesRequest(Request):
    """/v1/messages and /v1/messages/count_tokens."""

    messages: list[Message]
    system: str | list[TextBlock] | None = None
    max_tokens: Int | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Int | None = None
    stream: bool | None = False
    thinking: Thinking | None = None
    metadata: dict[str, Any] | None = None

    def to_chat(self, count_only: bool = False) -> ChatRequest:
        """The chat request this one means; a 400 for what the conversion cannot express."""
        msgs: list[dict] = []
        if self.system is not None:
            msgs.append({"role": "system", "content": _text(self.system)})
        for i, m in enumerate(self.messages):
            msgs.extend(_message(m, f"messages[{i}]"))
        max_tokens = self.max_tokens
        if max_tokens is None and not count_only:
            max_tokens = DEFAULT_MAX_TOKENS
        if max_tokens is not None and max_tokens < 1:
            raise bad_request("max_tokens: expected a positive integer")
        off = self.thinking is not None and self.thinking.type == "disabled"
        return ChatRequest(
            messages=msgs, tools=[_tool(t) for t in self.tools] if self.tools is not None else None,
            tool_choice=_tool_choice(self.tool_choice), stop=self.stop_sequences, max_tokens=max_tokens,
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, stream=self.stream,
            chat_template_kwargs={"enable_thinking": False} if off else None)


def _text(content: str | list[TextBlock]) -> str:
    return content if isinstance(content, str) else "".join(b.text for b in content)


def _message(m: Message, where: str) -> list[dict]:
    if m.role not in ("user", "assistant"):
        raise bad_request(f'{where}.role: expected "user" or "assistant"')
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    texts, calls, results, thinking = [], [], [], ""
    for j, b in enumerate(m.content):
        at = f"{where}.content[{j}]"
        if isinstance(b, TextBlock):
            texts.append({"type": "text", "text": b.text})
        elif isinstance(b, ToolUseBlock) and m.role == "assistant":
            calls.append({"id": b.id, "type": "function", "function": {
                "name": b.name, "arguments": json.dumps(b.input or {}, ensure_ascii=False, separators=(",", ":"))}})
        elif isinstance(b, ToolResultBlock) and m.role == "user":
            text = "" if b.content is None else _text(b.content)
            results.append({"role": "tool", "tool_call_id": b.tool_use_id, "content": text})
        elif isinstance(b, (ThinkingBlock, RedactedThinkingBlock)) and m.role == "assistant":
            thinking += b.thinking if isinstance(b, ThinkingBlock) else ""
        elif isinstance(b, ImageBlock):  # as llama-server: an OpenAI image_url part (service.api.media reads it)
            src = b.source or {}
            url = (f"data:{src.get('media_type') or 'image/jpeg'};base64,{src.get('data') or ''}"
                   if src.get("type") == "base64" else str(src.get("url") or ""))
            texts.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(b, DocumentBlock):
            raise bad_request(f"{at}: document input is not supported by this model")
        else:
            kind = b.__struct_config__.tag
            raise bad_request(f"{at}.type: unsupported content block {kind!r} in a {m.role} message")
    out = []
    if texts or calls:
        msg: dict = {"role": m.role, "content": texts if texts else ""}
        if calls:
            msg["tool_calls"] = calls
        if thinking:
            msg["reasoning_content"] = thinking
        out.append(msg)
    return out + results


def _tool(t: AnthropicTool) -> dict:
    schema = t.input_schema if t.input_schema is not None else {"type": "object"}
    return {"type": "function", "function": {"name": t.name, "description": t.description or "", "parameters": schema}}


def _tool_choice(tc: AnthropicToolChoice | None) -> str | dict | None:
    if tc is None:
        return None
    if tc.type == "tool":
        if tc.name is None:
            raise bad_request('tool_choice: {"type": "tool"} needs a name')
        return {"type": "function", "function": {"name": tc.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[tc.type]
