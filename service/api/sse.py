"""Server-sent events, framed once for every route.

llama-server's native and OpenAI routes send `data: {json}\\n\\n` per event, flushed at once, and
`error: {json}\\n\\n` for an error after the stream started; the OpenAI routes end with
`data: [DONE]\\n\\n`. The Anthropic and Responses routes name each event:
`event: <name>\\ndata: {json}\\n\\n`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
from litestar.response import Stream

from service.api.errors import from_failure
from service.api.runs import Runs
from service.engine.task import Event, Failure

_enc = msgspec.json.Encoder()

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


def data(obj) -> bytes:
    return b"data: " + _enc.encode(obj) + b"\n\n"


def named(name: str, obj) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _enc.encode(obj) + b"\n\n"


def error(f: Failure) -> bytes:
    e = from_failure(f)
    return b"error: " + _enc.encode({"code": e.code, "message": e.message, "type": e.type}) + b"\n\n"


def stream(runs: Runs, frame: Callable[[int, Event], list[bytes]], *, head: list[bytes] | None = None,
           tail: Callable[[], list[bytes]] | None = None,
           on_error: Callable[[Failure], bytes] = error) -> Stream:
    """An SSE response over the events of a request's runs: `frame(index, event)` gives the framed
    events to send for each (possibly none); a Failure ends the stream with `on_error`; `tail()` is
    sent after every run ended. If the client disconnects, Litestar closes the generator and every
    run is cancelled."""

    async def gen() -> AsyncIterator[bytes]:
        try:
            for chunk in head or []:
                yield chunk
            async for i, ev in runs.events():
                if isinstance(ev, Failure):
                    yield on_error(ev)
                    return
                for chunk in frame(i, ev):
                    yield chunk
            for chunk in tail() if tail else []:
                yield chunk
        finally:
            runs.cancel()

    return Stream(gen(), media_type="text/event-stream", headers=HEADERS)
