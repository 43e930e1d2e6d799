"""Anthropic Messages API: POST /v1/messages and /v1/messages/count_tokens.

The request (protocol_anthropic.MessagesRequest) is converted into a chat request and runs as
one; the answer comes back as Anthropic content blocks:

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

from service.api.chatjob import plan_chat, prepare_chat
from service.api.errors import ApiError, from_failure
from service.api.protocol import decode
from service.api.protocol_anthropic import MessagesRequest
from service.api.runs import Runs, log_fields
from service.api.sse import named, stream
from service.chat.chatmsg import ChatMsg, Delta
from service.chat.output import OutputStream, final_message
from service.engine.task import Failure, Final, Partial, StopType


def error_body(e: ApiError) -> dict:
    return {"type": "error", "error": {"type": e.type, "message": e.message}}


def _error(e: ApiError) -> Response:
    return Response(error_body(e), status_code=e.code)


# -- response ------------------------------------------------------------------------------------

def stop_reason(ev: Final, msg: ChatMsg) -> tuple[str, str | None]:
    if ev.stop_type is StopType.LIMIT:
        return "max_tokens", None
    if msg.tool_calls:
        return "tool_use", None
    if ev.stop_type is StopType.WORD and ev.stopping_word:
        return "stop_sequence", ev.stopping_word
    return "end_turn", None


def _usage(n_prompt: int, n_cached: int, n_out: int) -> dict:
    """Anthropic's usage: input_tokens are the prompt tokens read now, cache_read_input_tokens
    those reused from the prompt cache (llama-server's split)."""
    return {"cache_read_input_tokens": n_cached, "input_tokens": n_prompt - n_cached, "output_tokens": n_out}


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
        self.events.append(named("content_block_start", {"type": "content_block_start", "index": self.index,
                                                               "content_block": block}))

    def _delta(self, delta: dict) -> None:
        self.events.append(named("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                               "delta": delta}))

    def close(self) -> None:
        if self.open is None:
            return
        if self.open == "thinking":  # Anthropic closes thinking with a signature; a local model has none
            self._delta({"type": "signature_delta", "signature": ""})
        self.events.append(named("content_block_stop", {"type": "content_block_stop", "index": self.index}))
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


async def _messages(request: Request, req: MessagesRequest) -> Response:
    st = request.app.state.server
    chat = req.to_chat()
    job = await prepare_chat(request, chat, n_predict=chat.max_tokens, n_probs=0, allow_empty=True)
    runs = Runs(st.engine, [job.params])
    mid = "msg_" + secrets.token_hex(12)
    tok = st.model.tokenizer
    if not chat.stream:
        (ev,) = await runs.results(request)
        log_fields(request, ev, lambda: tok.detokenize(job.prompt))
        msg = final_message(job.plan.spec, ev.content)
        reason, seq = stop_reason(ev, msg)
        return Response({"id": mid, "type": "message", "role": "assistant", "model": st.alias,
                         "content": _blocks(msg), "stop_reason": reason, "stop_sequence": seq,
                         "usage": _usage(ev.n_prompt, ev.n_cached, ev.n_predicted)})

    out, blocks = OutputStream(job.plan.spec), BlockStream()
    start = {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "content": [], "model": st.alias, "stop_reason": None,
        "stop_sequence": None, "usage": _usage(len(job.prompt), 0, 0)}}

    def frame(_: int, ev) -> list[bytes]:
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
                named("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq},
                                        "usage": {"output_tokens": ev.n_predicted}}),
                named("message_stop", {"type": "message_stop"})]

    def on_error(f: Failure) -> bytes:
        return named("error", error_body(from_failure(f)))

    return stream(runs, frame, head=[named("message_start", start)], on_error=on_error)


@post("/v1/messages", status_code=200)
async def messages(request: Request) -> Response:
    try:
        return await _messages(request, decode(await request.body(), MessagesRequest))
    except ApiError as e:
        return _error(e)


@post("/v1/messages/count_tokens", status_code=200)
async def count_tokens(request: Request) -> Response:
    try:
        chat = decode(await request.body(), MessagesRequest).to_chat(count_only=True)
        plan = await plan_chat(request, chat, compile_grammar=False, allow_empty=True)
        return Response({"input_tokens": len(plan.rendered.tokenize(request.app.state.server.model.tokenizer))})
    except ApiError as e:
        return _error(e)
