"""Anthropic Messages API: POST /v1/messages and /v1/messages/count_tokens.

The body is converted to chat-completions fields (llama-server's convert_anthropic_to_oai) and
runs as a chat request; the answer comes back as Anthropic content blocks:

    system (string or text blocks)        -> a system message
    text / tool_use / tool_result blocks  -> text parts / assistant tool_calls / `tool` messages
    tools [{name, description, input_schema}], tool_choice {auto | any | tool+name | none}
    stop_sequences, max_tokens (4096 when absent, as llama-server), temperature, top_p, top_k

    answer: {"id": "msg_...", "type": "message", "role": "assistant", "content": [thinking?,
             text?, tool_use*], "stop_reason": end_turn | max_tokens | stop_sequence | tool_use, ...}

A stream sends message_start, then per content block content_block_start, its deltas
(thinking_delta, text_delta, input_json_delta) and content_block_stop, blocks one after another
in index order; then message_delta (stop_reason, output_tokens) and message_stop; no [DONE].
Errors use Anthropic's envelope {"type": "error", "error": {"type", "message"}} (an `error`
event inside a stream), as llama-server does on this route.
"""

from __future__ import annotations

import json
import secrets

from litestar import Request, Response, post

from service.api.bridge import log_fields, results
from service.api.chatjob import event_stream, named_event, plan_chat, prepare_chat, start_runs
from service.api.errors import ApiError, bad_request
from service.api.params import decode_json
from service.chat.chatmsg import ChatMsg, Delta
from service.chat.output import OutputStream, final_message
from service.engine.task import Failure, Final, Partial, StopType

DEFAULT_MAX_TOKENS = 4096


def error_body(code: int, message: str, type_: str) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _error(e: ApiError) -> Response:
    return Response(error_body(e.code, e.message, e.type), status_code=e.code)


# -- request -------------------------------------------------------------------------------------

def _text_of(blocks, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise bad_request(f"{where}: expected a string or an array of content blocks")
    out = []
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise bad_request(f"{where}[{i}]: expected a text block")
        out.append(b["text"])
    return "".join(out)


def to_chat(body: dict, count_only: bool = False) -> dict:
    """An Anthropic Messages body as chat-completions fields; 400 for malformed input."""
    out: list[dict] = []
    if body.get("system") is not None:
        out.append({"role": "system", "content": _text_of(body["system"], "system")})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: expected a non-empty array of messages")
    for i, m in enumerate(messages):
        out.extend(_message(m, f"messages[{i}]"))
    chat: dict = {"messages": out}
    if body.get("tools") is not None:
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("stop_sequences") is not None:
        chat["stop"] = body["stop_sequences"]
    max_tokens = body.get("max_tokens")
    if max_tokens is None and not count_only:
        max_tokens = DEFAULT_MAX_TOKENS
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise bad_request("max_tokens: expected a positive integer")
        chat["max_tokens"] = max_tokens
    for key in ("temperature", "top_p", "top_k", "stream"):
        if body.get(key) is not None:
            chat[key] = body[key]
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "disabled":
        chat["chat_template_kwargs"] = {"enable_thinking": False}
    return chat


def _message(m, where: str) -> list[dict]:
    if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
        raise bad_request(f"{where}.role: expected \"user\" or \"assistant\"")
    role, content = m["role"], m.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise bad_request(f"{where}.content: expected a string or an array of content blocks")
    texts, calls, results, thinking = [], [], [], ""
    for j, b in enumerate(content):
        kind = b.get("type") if isinstance(b, dict) else None
        at = f"{where}.content[{j}]"
        if kind == "text" and isinstance(b.get("text"), str):
            texts.append({"type": "text", "text": b["text"]})
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(b.get("name"), str) or not isinstance(b.get("input", {}), dict):
                raise bad_request(f"{at}: tool_use needs a name and an input object")
            calls.append({"id": str(b.get("id", "")), "type": "function", "function": {
                "name": b["name"], "arguments": json.dumps(b.get("input", {}), ensure_ascii=False, separators=(",", ":"))}})
        elif kind == "tool_result" and role == "user":
            text = b.get("content")
            text = "" if text is None else _text_of(text, f"{at}.content")
            results.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")), "content": text})
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            thinking += b.get("thinking", "") if isinstance(b.get("thinking"), str) else ""
        elif kind in ("image", "document"):
            raise bad_request(f"{at}: {kind} input is not supported by this model")
        else:
            raise bad_request(f"{at}.type: unsupported content block {kind!r} in a {role} message")
    out = []
    if texts or calls:
        msg: dict = {"role": role, "content": texts if texts else ""}
        if calls:
            msg["tool_calls"] = calls
        if thinking:
            msg["reasoning_content"] = thinking
        out.append(msg)
    return out + results


def _tools(tools) -> list[dict]:
    if not isinstance(tools, list):
        raise bad_request("tools: expected an array")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise bad_request(f"tools[{i}].name: expected a string")
        schema = t.get("input_schema", {"type": "object"})
        out.append({"type": "function", "function": {"name": t["name"], "description": t.get("description") or "",
                                                      "parameters": schema}})
    return out


def _tool_choice(tc):
    kind = tc.get("type") if isinstance(tc, dict) else None
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(tc.get("name"), str):
        return {"type": "function", "function": {"name": tc["name"]}}
    raise bad_request('tool_choice: expected {"type": "auto" | "any" | "none"} or {"type": "tool", "name": ...}')


# -- response ------------------------------------------------------------------------------------

def stop_reason(ev: Final, msg: ChatMsg) -> tuple[str, str | None]:
    if ev.stop_type is StopType.LIMIT:
        return "max_tokens", None
    if msg.tool_calls:
        return "tool_use", None
    if ev.stop_type is StopType.WORD and ev.stopping_word:
        return "stop_sequence", ev.stopping_word
    return "end_turn", None


def _blocks(msg: ChatMsg) -> list[dict]:
    out: list[dict] = []
    if msg.reasoning_content:
        out.append({"type": "thinking", "thinking": msg.reasoning_content, "signature": ""})
    if msg.content:
        out.append({"type": "text", "text": msg.content})
    for c in msg.tool_calls:
        try:
            args = json.loads(c.arguments) if c.arguments else {}
        except ValueError:
            args = {}
        out.append({"type": "tool_use", "id": c.id, "name": c.name, "input": args})
    return out


class BlockStream:
    """Content blocks of a streamed answer, opened and closed in order (state: the open block's kind)."""

    def __init__(self):
        self.index = -1
        self.open: str | None = None  # "thinking", "text", ("tool", k) or None
        self.events: list[bytes] = []

    def _start(self, kind, block: dict) -> None:
        self.close()
        self.index += 1
        self.open = kind
        self.events.append(named_event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                               "content_block": block}))

    def _delta(self, delta: dict) -> None:
        self.events.append(named_event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                               "delta": delta}))

    def close(self) -> None:
        if self.open is None:
            return
        if self.open == "thinking":  # Anthropic closes thinking with a signature; a local model has none
            self._delta({"type": "signature_delta", "signature": ""})
        self.events.append(named_event("content_block_stop", {"type": "content_block_stop", "index": self.index}))
        self.open = None

    def add(self, d: Delta) -> None:
        if d.reasoning:
            if self.open != "thinking":
                self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._delta({"type": "thinking_delta", "thinking": d.reasoning})
        if d.content:
            if self.open != "text":
                self._start("text", {"type": "text", "text": ""})
            self._delta({"type": "text_delta", "text": d.content})
        if d.tool_index >= 0:
            if d.tool_name:
                self._start(("tool", d.tool_index), {"type": "tool_use", "id": d.tool_id, "name": d.tool_name,
                                                     "input": {}})
            if d.tool_args and self.open == ("tool", d.tool_index):
                self._delta({"type": "input_json_delta", "partial_json": d.tool_args})

    def take(self) -> list[bytes]:
        out, self.events = self.events, []
        return out


async def _messages(request: Request, body: dict) -> Response:
    st = request.app.state.server
    chat = to_chat(body)
    stream = bool(chat.get("stream", False))
    job = await prepare_chat(request, chat, stream=stream, n_predict=chat["max_tokens"], n_probs=0)
    run = start_runs(st, job.params, 1)[0]
    mid = "msg_" + secrets.token_hex(12)
    tok = st.model.tokenizer
    if not stream:
        (ev,) = await results(request, [run])
        log_fields(request, ev, lambda: tok.detokenize(job.prompt))
        msg = final_message(job.plan.spec, ev.content)
        reason, seq = stop_reason(ev, msg)
        return Response({"id": mid, "type": "message", "role": "assistant", "model": st.alias,
                         "content": _blocks(msg), "stop_reason": reason, "stop_sequence": seq,
                         "usage": {"input_tokens": ev.n_prompt, "output_tokens": ev.n_predicted}})

    out, blocks = OutputStream(job.plan.spec), BlockStream()
    start = {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "content": [], "model": st.alias, "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": len(job.prompt), "output_tokens": 0}}}

    def handle(ev) -> list[bytes]:
        if isinstance(ev, Partial):
            for d in out.feed(ev.content):
                blocks.add(d)
            return blocks.take()
        log_fields(request, ev, lambda: tok.detokenize(job.prompt))
        msg, deltas = out.finish(ev.content)
        for d in deltas:
            blocks.add(d)
        blocks.close()
        reason, seq = stop_reason(ev, msg)
        return [*blocks.take(),
                named_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason,
                                                                                 "stop_sequence": seq},
                                              "usage": {"output_tokens": ev.n_predicted}}),
                named_event("message_stop", {"type": "message_stop"})]

    def on_error(f: Failure) -> bytes:
        return named_event("error", error_body(f.code, f.message, f.type))

    return event_stream(run, handle, on_error, head=[named_event("message_start", start)])


@post("/v1/messages", status_code=200)
async def messages(request: Request) -> Response:
    try:
        return await _messages(request, decode_json(await request.body()))
    except ApiError as e:
        return _error(e)


@post("/v1/messages/count_tokens", status_code=200)
async def count_tokens(request: Request) -> Response:
    try:
        chat = to_chat(decode_json(await request.body()), count_only=True)
        plan = await plan_chat(request, chat, stream=False, compile_grammar=False)
        return Response({"input_tokens": len(plan.rendered.tokenize(request.app.state.server.model.tokenizer))})
    except ApiError as e:
        return _error(e)
