"""The router's models: which are loaded, who waits for one, and which one makes room.

All of it runs on the router's event loop (one thread), so the state needs no locks; a change
(a model loaded, exited, a request finished) wakes every waiter, which looks again.

Room (--models-max N, 0 = no limit): a model that is loading, loaded or stopping takes a place.
Requests that need an unloaded model wait in one FIFO queue, one entry per model however many
requests want it (they share its load). The head of the queue loads when a place is free; else
the least recently used model that is idle (loaded, no request waiting for it or being forwarded
to it, not stopping) is unloaded to make room, one at a time; with no idle model the head waits.
A model never unloads under a running request, and a queue entry whose requests all left (their
clients went away) is dropped without costing anyone a place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from service.router.catalog import Entry
from service.router.instance import Instance, State

log = structlog.get_logger("llamajit.router")


class LoadFailed(Exception):
    pass


class Pool:
    def __init__(self, entries: dict[str, Entry], argv: list[str], environ: dict[str, str], models_max: int,
                 instance=Instance):
        self.instances = {name: instance(e) for name, e in entries.items()}
        self.argv, self.environ, self.models_max = argv, environ, models_max
        self.queue: list[Instance] = []
        self._changed = asyncio.Event()
        self.listeners: set[asyncio.Queue] = set()  # /models/sse subscribers
        self._tasks: set[asyncio.Task] = set()
        self.closing = asyncio.Event()  # set when the router stops

    def get(self, name: str) -> Instance | None:
        return self.instances.get(name)

    # -- events
    def on_change(self, inst: Instance) -> None:
        data = {"status": inst.state.value}
        if inst.state is State.LOADED:
            data["info"] = inst.info
        if inst.failed:
            data["failed"], data["exit_code"] = True, inst.exit_code
        self.publish({"model": inst.name, "event": "model_status", "data": data})
        self.changed()

    def publish(self, event: dict) -> None:
        for q in list(self.listeners):
            q.put_nowait(event)

    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._pump()

    async def wait_change(self) -> None:
        await self._changed.wait()

    # -- places
    def _occupied(self) -> int:
        return sum(1 for i in self.instances.values() if i.running)

    def _spawn(self, inst: Instance) -> None:
        inst.begin(self.argv)
        task = asyncio.get_running_loop().create_task(inst.start(self.environ, self.on_change))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pump(self) -> None:
        while self.queue:
            head = self.queue[0]
            if head.users == 0 or head.running:  # nobody waits for it any more, or it is on its way
                self.queue.pop(0)
                continue
            if self.models_max <= 0 or self._occupied() < self.models_max:
                self.queue.pop(0)
                self._spawn(head)
                continue
            if not any(i.stopping for i in self.instances.values()):  # one eviction at a time
                idle = [i for i in self.instances.values() if i.idle]
                if idle:
                    victim = min(idle, key=lambda i: i.last_used)
                    log.info("unloading the least recently used model to make room", model=victim.name,
                             for_model=head.name)
                    victim.stop()
            return

    # -- what the routes use
    @contextlib.asynccontextmanager
    async def use(self, inst: Instance):
        """Hold `inst`: it is not evicted until the block ends (a request waiting for it or forwarded to it)."""
        inst.users += 1
        try:
            yield inst
        finally:
            inst.users -= 1
            if inst.users == 0:
                self.changed()

    async def ready(self, inst: Instance) -> None:
        """Wait until `inst` (held with use()) is loaded, queueing its load; LoadFailed if that load fails."""
        attempts = inst.attempts - (inst.state is not State.UNLOADED)  # a load under way counts as ours
        while True:
            if inst.state is State.LOADED and not inst.stopping:
                return
            if inst.state is State.UNLOADED:
                if inst.attempts > attempts and inst.failed:
                    raise LoadFailed(f"model name={inst.name} failed to load")
                if inst not in self.queue:
                    self.queue.append(inst)
                    self._pump()
            await self.wait_change()

    def load(self, inst: Instance) -> None:
        """POST /models/load: queue its load, as a request for it would, without waiting."""
        async def run():
            async with self.use(inst):
                with contextlib.suppress(LoadFailed):
                    await self.ready(inst)
        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def touch(self, inst: Instance) -> None:
        inst.last_used = time.monotonic()

    async def stop_all(self, timeout: float) -> None:
        self.closing.set()
        for inst in self.instances.values():
            inst.stop()
        deadline = time.monotonic() + timeout
        while any(i.proc is not None and i.proc.returncode is None for i in self.instances.values()):
            if time.monotonic() > deadline:
                for inst in self.instances.values():
                    inst.kill_now()
                break
            await asyncio.sleep(0.05)
