"""Server-sent events as llama-server frames them: `data: {json}\\n\\n` per event, flushed at
once; `error: {json}\\n\\n` for an error after the stream started; OpenAI routes end with
`data: [DONE]\\n\\n`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import msgspec
from litestar.response import Stream

from service.api.bridge import TaskRun
from service.engine.task import Failure, Final, Partial

_enc = msgspec.json.Encoder()

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def data(obj) -> bytes:
    return b"data: " + _enc.encode(obj) + b"\n\n"


def error(code: int, message: str, type_: str) -> bytes:
    return b"error: " + _enc.encode({"code": code, "message": message, "type": type_}) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def stream_runs(
    runs: list[TaskRun],
    on_partial: Callable[[int, Partial], list],
    on_final: Callable[[int, Final], list],
    *,
    head: list | None = None,
    tail: Callable[[], list] | None = None,
    done: bool = False,
) -> Stream:
    """An SSE response merging the events of several runs (index = position in runs).

    on_partial/on_final map an event to the objects to send (possibly none). If the client
    disconnects, Litestar cancels the generator and every run is cancelled."""

    async def gen() -> AsyncIterator[bytes]:
        q: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, r: TaskRun) -> None:
            async for ev in r.events():
                await q.put((i, ev))

        pumps = [asyncio.ensure_future(pump(i, r)) for i, r in enumerate(runs)]
        try:
            for obj in head or []:
                yield data(obj)
            left = len(runs)
            while left:
                i, ev = await q.get()
                if isinstance(ev, Failure):
                    yield error(ev.code, ev.message, ev.type)
                    return
                objs = on_final(i, ev) if isinstance(ev, Final) else on_partial(i, ev)
                for obj in objs:
                    yield data(obj)
                if isinstance(ev, Final):
                    left -= 1
            for obj in tail() if tail else []:
                yield data(obj)
            if done:
                yield DONE
        finally:
            for r in runs:
                r.cancel()
            for p in pumps:
                p.cancel()

    return Stream(gen(), media_type="text/event-stream", headers=HEADERS)
