"""OpenAI's Responses request, typed, and its conversion into a chat request (llama-server's
convert_responses_to_chatcmpl):

    input: a string (one user message) or items: messages ({role, content: string | input_text /
    output_text parts}), function_call {call_id, name, arguments}, function_call_output {call_id,
    output}, reasoning {content: [{text}]}; instructions -> a system message first
    tools [{"type": "function", name, description, parameters}], tool_choice (the function named
    at the top level), max_output_tokens, temperature, top_p, text.format (json_schema /
    json_object) -> response_format
    previous_response_id -> 400 (nothing is stored, as in llama-server)
"""

from __future__ import annotations

from typing import Any

from service.api.errors import bad_request
from service.api.protocol import Int, JsonSchemaFormat, Request, ResponseFormat
from service.api.protocol_openai import ChatRequest


class Part(Request):
    type: str | None = None
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None  # input_image (a data: URI; service.api.media reads it)


class Item(Request):
    """One input item; which kind it is follows from `type` and `role` (a message may omit type)."""

    type: str | None = None
    role: str | None = None
    content: str | list[Part] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[Part] | None = None


class FunctionTool(Request):
    name: str
    type: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None


class TextFormat(Request):
    type: str | None = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None


class TextOptions(Request):
    format: TextFormat | None = None


class ResponsesRequest(Request):
    """/v1/responses; the fields a response echoes back are kept as sent."""

    input: str | list[Item] | None = None
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: Int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Int | None = None
    seed: Int | None = None
    stream: bool | None = False
    stop: str | list[str] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_format: str | None = None
    reasoning: dict[str, Any] | None = None  # {"effort": ...}: the chat request's reasoning_effort (llama-server)
    chat_template_kwargs: dict[str, Any] | None = None
    text: TextOptions | None = None
    previous_response_id: str | None = None
    timings_per_token: bool | None = False  # llama-server's telemetry on a stream's events
    return_progress: bool | None = False

    def to_chat(self) -> ChatRequest:
        if self.previous_response_id:
            raise bad_request("previous_response_id: this server does not store responses")
        if self.input is None:
            raise bad_request("input: required")
        msgs: list[dict] = []
        if self.instructions is not None:
            msgs.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            msgs.append({"role": "user", "content": self.input})
        else:
            for i, item in enumerate(self.input):
                _item(msgs, item, f"input[{i}]")
        tc = self.tool_choice
        if isinstance(tc, dict) and "function" not in tc:  # Responses names the function at the top level
            tc = {"type": tc.get("type"), "function": {"name": tc.get("name")}}
        return ChatRequest(
            messages=msgs, tools=[_tool(t, i) for i, t in enumerate(self.tools)] if self.tools is not None else None,
            tool_choice=tc, max_tokens=self.max_output_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, seed=self.seed, stream=self.stream, stop=self.stop,
            parallel_tool_calls=self.parallel_tool_calls, reasoning_format=self.reasoning_format,
            reasoning_effort=(self.reasoning or {}).get("effort"),
            chat_template_kwargs=self.chat_template_kwargs, response_format=self._format(),
            timings_per_token=self.timings_per_token, return_progress=self.return_progress)

    def _format(self) -> ResponseFormat | None:
        fmt = self.text.format if self.text is not None else None
        if fmt is not None and fmt.type == "json_schema":
            return ResponseFormat(type="json_schema", json_schema=JsonSchemaFormat(schema=fmt.schema or {}))
        if fmt is not None and fmt.type == "json_object":
            return ResponseFormat(type="json_object")
        return None


def _parts(content: str | list[Part] | None, where: str) -> str | list[dict]:
    if content is None:
        raise bad_request(f"{where}: expected a string or an array of content parts")
    if isinstance(content, str):
        return content
    out = []
    for j, p in enumerate(content):
        if p.type in ("input_text", "output_text", "text") and p.text is not None:
            out.append({"type": "text", "text": p.text})
        elif p.type == "refusal" and p.refusal is not None:
            out.append({"type": "text", "text": p.refusal})
        elif p.type == "input_image":  # as llama-server: an OpenAI chat image_url part
            if p.image_url is None:
                raise bad_request(f"{where}[{j}]: 'image_url' is required")
            out.append({"type": "image_url", "image_url": {"url": p.image_url}})
        elif p.type in ("input_file", "input_audio"):
            raise bad_request(f"{where}[{j}]: {p.type} is not supported by this model")
        else:
            raise bad_request(f"{where}[{j}].type: unsupported content part {p.type!r}")
    return out


def _assistant(msgs: list[dict]) -> dict:
    """The assistant message that output items join (a new one unless the last message is one)."""
    if not msgs or msgs[-1].get("role") != "assistant":
        msgs.append({"role": "assistant", "content": ""})
    return msgs[-1]


def _item(msgs: list[dict], item: Item, where: str) -> None:
    kind, role = item.type, item.role
    if role in ("user", "system", "developer") and kind in (None, "message"):
        msgs.append({"role": "system" if role == "developer" else role,
                     "content": _parts(item.content, f"{where}.content")})
    elif role == "assistant" and kind in (None, "message"):
        content = _parts(item.content, f"{where}.content")
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        prev = _assistant(msgs)
        prev["content"] = (prev.get("content") or "") + text
    elif kind == "function_call":
        if item.call_id is None or item.name is None or item.arguments is None:
            raise bad_request(f"{where}: a function_call needs call_id, name and arguments strings")
        prev = _assistant(msgs)
        prev.setdefault("tool_calls", []).append({"id": item.call_id, "type": "function", "function": {
            "name": item.name, "arguments": item.arguments}})
    elif kind == "function_call_output":
        if item.call_id is None or item.output is None:
            raise bad_request(f"{where}: a function_call_output needs call_id and output")
        msgs.append({"role": "tool", "tool_call_id": item.call_id, "content": _parts(item.output, f"{where}.output")})
    elif kind == "reasoning":
        parts = item.content if isinstance(item.content, list) else []
        _assistant(msgs)["reasoning_content"] = "".join(p.text or "" for p in parts)
    else:
        raise bad_request(f"{where}: cannot tell what kind of item this is (type {kind!r}, role {role!r})")


def _tool(t: FunctionTool, i: int) -> dict:
    if t.type != "function":
        raise bad_request(f'tools[{i}].type: only "function" tools are supported')
    fn: dict = {"name": t.name}
    if t.description is not None:
        fn["description"] = t.description
    if t.parameters is not None:
        fn["parameters"] = t.parameters
    return {"type": "function", "function": fn}
