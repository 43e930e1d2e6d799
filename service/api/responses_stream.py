"""A /v1/responses answer's output items, and its event stream (OpenAI's Responses streaming events).

    response.created, response.in_progress                      (head)
    per output item, in the order they appear:
      reasoning: output_item.added, reasoning_text.delta*
      message:   output_item.added, content_part.added, output_text.delta*
      call k:    output_item.added (name, call_id), function_call_arguments.delta*
    at the end: the *.done events of each item, then response.completed with the whole response

Every event carries `type` and a `sequence_number` counting from 0, and is framed as
`event: <type>\\ndata: <json>\\n\\n`. Item ids are fixed when the stream starts, so the done
events and the final response name the same items as the added events did.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from service.api.errors import from_failure
from service.api.sse import named
from service.chat.chatmsg import ChatMsg
from service.chat.output import OutputSpec, OutputStream
from service.engine.task import Failure, Final, Partial


class Items:
    """Output items of one answer, with the ids a stream gave them."""

    def __init__(self):
        self.reasoning_id, self.message_id = new_id("rs_"), new_id("msg_")

    def reasoning(self, text: str, status: str = "completed") -> dict:
        return {"id": self.reasoning_id, "type": "reasoning", "summary": [], "status": status,
                "content": [{"type": "reasoning_text", "text": text}] if text else [], "encrypted_content": ""}

    def message(self, text: str | None, status: str = "completed") -> dict:
        parts = [] if text is None else [text_part(text)]
        return {"id": self.message_id, "type": "message", "role": "assistant", "status": status, "content": parts}

    @staticmethod
    def call(call_id: str, name: str, args: str, status: str = "completed") -> dict:
        return {"id": "fc_" + call_id, "type": "function_call", "status": status, "call_id": "fc_" + call_id,
                "name": name, "arguments": args}

    def output(self, msg: ChatMsg) -> list[dict]:
        out = [self.reasoning(msg.reasoning_content)] if msg.reasoning_content else []
        if msg.content:
            out.append(self.message(msg.content))
        return out + [self.call(c.id, c.name, c.arguments) for c in msg.tool_calls]


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


class ResponseStream:
    def __init__(self, spec: OutputSpec, items, response: Callable[[str, list, Final | None], dict]):
        """items: responses.Items (the ids); response(status, output, final) -> the response object."""
        self.out = OutputStream(spec)
        self.items = items
        self.response = response
        self.order: list[str] = []  # "reasoning", "message", "call:<k>": output items as they were added
        self.n = 0

    def emit(self, kind: str, **data) -> dict:
        """One event, numbered; encode() frames a list of them."""
        ev = {"type": kind, "sequence_number": self.n, **data}
        self.n += 1
        return ev

    @staticmethod
    def encode(evs: list[dict], extras: dict | None = None) -> list[bytes]:
        """Frame the events; `extras` (a step's timings and prompt progress) ride on the last."""
        if extras and evs:
            evs[-1].update(extras)
        return [named(ev["type"], ev) for ev in evs]

    def index(self, key: str) -> int:
        if key not in self.order:
            self.order.append(key)
        return self.order.index(key)

    def head(self) -> list[bytes]:
        pending = self.response("in_progress", [], None)
        return self.encode([self.emit("response.created", response=pending),
                            self.emit("response.in_progress", response=pending)])

    def partial(self, ev: Partial, extras: dict) -> list[bytes]:
        """A step's events; a prompt-progress step is a response.in_progress event, as llama-server."""
        evs = self._deltas(self.out.feed(ev.content))
        if ev.progress is not None:
            evs.insert(0, self.emit("response.in_progress", response=self.response("in_progress", [], None)))
        return self.encode(evs, extras)

    def final(self, ev: Final, extras: dict) -> list[bytes]:
        _, last = self.out.finish(ev.content)
        evs = self._deltas(last)
        sent, items = self.out.tracker.sent, self.items
        output = []
        for key in self.order:
            i = self.index(key)
            if key == "reasoning":
                item = items.reasoning(sent.reasoning_content)
            elif key == "message":
                text = sent.content
                evs.append(self.emit("response.output_text.done", item_id=items.message_id, output_index=i,
                                     content_index=0, text=text, logprobs=[]))
                evs.append(self.emit("response.content_part.done", item_id=items.message_id, output_index=i,
                                     content_index=0, part=text_part(text)))
                item = items.message(text)
            else:
                c = sent.tool_calls[int(key.split(":")[1])]
                evs.append(self.emit("response.function_call_arguments.done", item_id="fc_" + c.id, output_index=i,
                                     arguments=c.arguments))
                item = items.call(c.id, c.name, c.arguments)
            evs.append(self.emit("response.output_item.done", output_index=i, item=item))
            output.append(item)
        # response.completed even when cut short (status "incomplete"), as llama-server: the
        # OpenAI SDK's stream helper waits for that event
        evs.append(self.emit("response.completed", response=self.response("completed", output, ev)))
        return self.encode(evs, extras)

    def error(self, f: Failure) -> bytes:
        e = from_failure(f)
        return self.encode([self.emit("error", code=str(e.code), message=e.message, param=None)])[0]

    def _deltas(self, deltas) -> list[dict]:
        evs, items = [], self.items
        for d in deltas:
            if d.reasoning:
                if "reasoning" not in self.order:
                    evs.append(self.emit("response.output_item.added", output_index=self.index("reasoning"),
                                         item=items.reasoning("", "in_progress")))
                evs.append(self.emit("response.reasoning_text.delta", item_id=items.reasoning_id,
                                     output_index=self.index("reasoning"), content_index=0, delta=d.reasoning))
            if d.content:
                if "message" not in self.order:
                    i = self.index("message")
                    evs.append(self.emit("response.output_item.added", output_index=i,
                                         item=items.message(None, "in_progress")))
                    evs.append(self.emit("response.content_part.added", item_id=items.message_id, output_index=i,
                                         content_index=0, part=text_part("")))
                evs.append(self.emit("response.output_text.delta", item_id=items.message_id,
                                     output_index=self.index("message"), content_index=0, delta=d.content,
                                     logprobs=[]))
            if d.tool_index >= 0:
                key = f"call:{d.tool_index}"
                call_id = self.out.tracker.sent.tool_calls[d.tool_index].id
                if d.tool_name:
                    evs.append(self.emit("response.output_item.added", output_index=self.index(key),
                                         item=items.call(call_id, d.tool_name, "", "in_progress")))
                if d.tool_args:
                    evs.append(self.emit("response.function_call_arguments.delta", item_id="fc_" + call_id,
                                         output_index=self.index(key), delta=d.tool_args))
        return evs
