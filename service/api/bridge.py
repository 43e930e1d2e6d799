"""Running engine tasks from async handlers: events cross from the engine thread by
`loop.call_soon_threadsafe`, and a client that goes away cancels its tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from litestar import Request

from service.engine.task import Embedding, Event, Failure, Final, Task, TaskParams


class TaskRun:
    """One submitted task and the queue its events arrive on."""

    def __init__(self, engine, params: TaskParams):
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.engine = engine
        self.task = Task(params, lambda ev: loop.call_soon_threadsafe(self.queue.put_nowait, ev))
        self.done = False
        engine.submit(self.task)

    async def events(self) -> AsyncIterator[Event]:
        while not self.done:
            ev = await self.queue.get()
            if isinstance(ev, (Final, Failure, Embedding)):
                self.done = True
            yield ev

    async def final(self) -> Final | Embedding | Failure:
        async for ev in self.events():
            if isinstance(ev, (Final, Failure, Embedding)):
                return ev
        raise RuntimeError("task ended without a result")

    def cancel(self) -> None:
        if not self.done:
            self.task.cancel()
            self.engine.wake()


async def wait_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body was already read)."""
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


class ClientGone(Exception):
    """The client disconnected before its results were ready (answered 499, read by nobody)."""


async def results(request: Request, runs: list[TaskRun]) -> list:
    """Every run's result in order; a Failure is raised as its ApiError, a departed client as ClientGone."""
    from service.api.errors import ApiError

    finals = await gather_finals(request, runs)
    if finals is None:
        raise ClientGone
    for ev in finals:
        if isinstance(ev, Failure):
            raise ApiError(ev.code, ev.message, ev.type)
    return finals


async def gather_finals(request: Request, runs: list[TaskRun]) -> list[Final | Failure] | None:
    """Wait for every run's result; None (and the runs cancelled) if the client left first."""
    results = asyncio.ensure_future(asyncio.gather(*(r.final() for r in runs)))
    gone = asyncio.ensure_future(wait_disconnect(request))
    try:
        await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not results.done():
            for r in runs:
                r.cancel()
            results.cancel()
        gone.cancel()
    return results.result() if results.done() and not results.cancelled() else None


def log_fields(request: Request, ev, text_of=None) -> None:
    """Add a finished task's facts to the request's log line (the Gate writes it). The prompt
    text is added only with --log-prompts; `text_of` makes it on demand."""
    fields = request.scope.setdefault("state", {}).setdefault("log", {})
    if isinstance(ev, Final):
        t = ev.timings
        fields.update(slot=ev.id_slot, prompt_tokens=ev.n_prompt, cached_tokens=ev.n_cached,
                      predicted_tokens=fields.get("predicted_tokens", 0) + ev.n_predicted,
                      prompt_ms=round(t.prompt_ms, 2), predicted_ms=round(t.predicted_ms, 2),
                      stop_type=ev.stop_type.value)
    elif isinstance(ev, Embedding):
        fields.update(prompt_tokens=fields.get("prompt_tokens", 0) + ev.n_prompt)
    if text_of is not None and request.app.state.server.args.log_prompts:
        fields["prompt"] = text_of()
