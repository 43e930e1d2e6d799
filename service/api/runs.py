"""Running engine tasks from async handlers.

    runs = Runs(engine, [params, ...])        # submitted at once
    async for i, ev in runs.events(): ...     # a stream: every task's events, tagged with its index
    finals = await runs.results(request)      # or the last event of each, in order

The engine thread hands each event to the event loop with `loop.call_soon_threadsafe`, straight
onto the one queue of the request: an event crosses one queue, however many tasks a request has.
A client that goes away cancels its tasks. A request whose tasks the engine cannot queue
(--max-queue) is answered 503 with Retry-After before anything is sent, so a load balancer or a
client can retry it on another replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from litestar import Request

from service.api.errors import ApiError, from_failure
from service.engine.task import Embedding, Event, Failure, Final, QueueFull, Task, TaskParams

RETRY_AFTER_S = 1  # a slot frees within a generation or two on this server; a peer may have one now

_LAST = (Final, Failure, Embedding)  # a task's last event


class ClientGone(Exception):
    """The client disconnected before its results were ready (answered 499, read by nobody)."""


class Runs:
    """The engine tasks of one request and the queue their (index, event) pairs arrive on."""

    def __init__(self, engine, params: list[TaskParams]):
        loop = asyncio.get_running_loop()
        self.engine = engine
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.tasks = [Task(p, self._sink(loop, i)) for i, p in enumerate(params)]
        self.done = [False] * len(params)
        try:
            engine.submit(*self.tasks)
        except QueueFull as e:
            raise ApiError(503, str(e), headers={"Retry-After": str(RETRY_AFTER_S)}) from None

    def _sink(self, loop: asyncio.AbstractEventLoop, i: int):
        return lambda ev: loop.call_soon_threadsafe(self.queue.put_nowait, (i, ev))

    def __len__(self) -> int:
        return len(self.tasks)

    async def events(self) -> AsyncIterator[tuple[int, Event]]:
        """Every event of every task, as it comes, until each task has sent its last one."""
        while not all(self.done):
            i, ev = await self.queue.get()
            if isinstance(ev, _LAST):
                self.done[i] = True
            yield i, ev

    async def _lasts(self) -> list[Event]:
        out: list = [None] * len(self.tasks)
        async for i, ev in self.events():
            if isinstance(ev, _LAST):
                out[i] = ev
        return out

    async def results(self, request: Request) -> list:
        """Each task's result (Final or Embedding) in order. A Failure is raised as its ApiError;
        a client that leaves first cancels the tasks and raises ClientGone."""
        lasts = asyncio.ensure_future(self._lasts())
        gone = asyncio.ensure_future(_disconnect(request))
        try:
            await asyncio.wait({lasts, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not lasts.done():
                self.cancel()
                lasts.cancel()
            gone.cancel()
        if not lasts.done() or lasts.cancelled():
            raise ClientGone
        out = lasts.result()
        for ev in out:
            if isinstance(ev, Failure):
                raise from_failure(ev)
        return out

    def cancel(self) -> None:
        """Cancel every task that has not ended (thread-safe; the engine drops them at its next step)."""
        live = [t for t, d in zip(self.tasks, self.done) if not d]
        for t in live:
            t.cancel()
        if live:
            self.engine.wake()


async def _disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body was already read)."""
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


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
