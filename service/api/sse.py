"""Server-sent events, framed once for every route.

llama-server's native and OpenAI routes send `data: {json}\\n\\n` per event, flushed at once, and
`data: {"error": {json}}\\n\\n` for an error after the stream started (0c1e570; older versions
sent an `error:` field, which EventSource clients drop); the OpenAI routes end with
`data: [DONE]\\n\\n`. The Anthropic and Responses routes name each event:
`event: <name>\\ndata: {json}\\n\\n`.

While a stream waits for its next event for --sse-ping-interval seconds (default 30; 0 or -1:
never), it sends an SSE comment, `:\\n\\n`, as llama-server does: some clients (undici's fetch)
drop a connection that stays silent, e.g. while the request waits for a free slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import msgspec
from litestar.response import Stream

from service.api.errors import from_failure
from service.api.runs import Runs
from service.engine.task import Event, Failure

_enc = msgspec.json.Encoder()

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"
PING = b":\n\n"
_ping_interval = 30.0  # --sse-ping-interval: one value per server process, set by create_app


def set_ping_interval(seconds: float) -> None:
    global _ping_interval
    _ping_interval = float(seconds)


async def _with_pings(events: AsyncIterator, interval: float) -> AsyncIterator:
    """`events`, with PING yielded each time `interval` seconds pass without one (interval <= 0:
    just `events`). The pending event is awaited as a task, so a ping never cancels it."""
    if interval <= 0:
        async for ev in events:
            yield ev
        return
    it = events.__aiter__()
    pending = None
    try:
        while True:
            pending = asyncio.ensure_future(it.__anext__())
            while not (await asyncio.wait({pending}, timeout=interval))[0]:
                yield PING
            try:
                ev = pending.result()
            except StopAsyncIteration:
                return
            yield ev
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


def data(obj) -> bytes:
    return b"data: " + _enc.encode(obj) + b"\n\n"


def named(name: str, obj) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _enc.encode(obj) + b"\n\n"


def error(f: Failure) -> bytes:
    e = from_failure(f)
    return b"data: " + _enc.encode({"error": {"code": e.code, "message": e.message, "type": e.type}}) + b"\n\n"


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
            async with aclosing(_with_pings(runs.events(), _ping_interval)) as items:
                async for item in items:
                    if item is PING:
                        yield PING
                        continue
                    i, ev = item
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
