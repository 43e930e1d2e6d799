"""The router's scheduling (service.router.pool) with instances whose "process" is a timer: the
queue, --models-max, LRU eviction, shared loads, clients that leave. The same rules through real
child servers: tests/test_router.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.router.catalog import Entry
from service.router.instance import Instance, State
from service.router.pool import LoadFailed, Pool


class FakeInstance(Instance):
    """Loads in 20 ms (a name starting with "bad" fails), exits 10 ms after stop()."""
    loads: list[str] = []

    def command(self, router_argv):
        return [self.name]

    async def start(self, environ, on_change):
        FakeInstance.loads.append(self.name)
        await asyncio.sleep(0.02)
        if self.name.startswith("bad"):
            self.state, self.failed, self.exit_code = State.UNLOADED, True, 1
        else:
            self.state = State.LOADED
        on_change(self)

    def stop(self):
        if self.state is State.UNLOADED or self.stopping:
            return
        self.stopping = True
        asyncio.get_running_loop().call_later(0.01, self._exited)

    def _exited(self):
        self.state, self.stopping = State.UNLOADED, False
        self._on_change(self)


def make_pool(models_max: int, *names: str) -> Pool:
    FakeInstance.loads = []
    pool = Pool({n: Entry(n, "models_dir", ["-m", n]) for n in names}, [], {}, models_max, instance=FakeInstance)
    for inst in pool.instances.values():
        inst._on_change = pool.on_change
    return pool


async def request(pool: Pool, name: str, hold: float = 0.0, done: list | None = None) -> None:
    """A request for `name`: waits for its model, then holds it `hold` seconds (being forwarded)."""
    inst = pool.get(name)
    async with pool.use(inst):
        await pool.ready(inst)
        pool.touch(inst)
        await asyncio.sleep(hold)
        if done is not None:
            done.append((name, time.monotonic()))


def states(pool: Pool) -> dict[str, str]:
    return {n: i.state.value for n, i in pool.instances.items()}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_the_least_recently_used_idle_model_makes_room():
    async def go():
        pool = make_pool(2, "a", "b", "c")
        await request(pool, "a")
        await request(pool, "b")
        await request(pool, "a")  # a used last: b is the one to go
        await request(pool, "c")
        return states(pool)
    assert run(go()) == {"a": "loaded", "b": "unloaded", "c": "loaded"}


def test_a_busy_model_is_never_evicted():
    async def go():
        pool = make_pool(1, "a", "b")
        await request(pool, "a")
        done: list = []
        busy = asyncio.create_task(request(pool, "a", hold=0.2, done=done))
        await asyncio.sleep(0.01)
        await request(pool, "b", done=done)
        await busy
        return [n for n, _ in done], states(pool)
    order, st = run(go())
    assert order == ["a", "b"] and st == {"a": "unloaded", "b": "loaded"}


def test_requests_for_one_model_share_its_load_and_one_eviction():
    async def go():
        pool = make_pool(2, "a", "b", "c")
        await request(pool, "a")
        await request(pool, "b")
        busy = asyncio.create_task(request(pool, "a", hold=0.1))
        await asyncio.sleep(0.01)
        await asyncio.gather(*(request(pool, "c") for _ in range(3)))
        await busy
        await asyncio.sleep(0.05)
        return FakeInstance.loads, states(pool)
    loads, st = run(go())
    assert loads == ["a", "b", "c"] and st == {"a": "loaded", "b": "unloaded", "c": "loaded"}


def test_a_client_that_leaves_the_queue_costs_nobody_a_place():
    async def go():
        pool = make_pool(1, "a", "b")
        await request(pool, "a")
        busy = asyncio.create_task(request(pool, "a", hold=0.1))
        await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(request(pool, "b"), 0.03)
        await busy
        await asyncio.sleep(0.1)
        return states(pool), pool.queue
    st, queue = run(go())
    assert st == {"a": "loaded", "b": "unloaded"} and queue == []


def test_the_queue_is_first_in_first_out():
    async def go():
        pool = make_pool(1, "a", "b", "c")
        await request(pool, "a")
        done: list = []
        busy = asyncio.create_task(request(pool, "a", hold=0.1))
        await asyncio.sleep(0.01)
        first = asyncio.create_task(request(pool, "b", done=done))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(request(pool, "c", done=done))
        await asyncio.gather(busy, first, second)
        return [n for n, _ in done]
    assert run(go()) == ["b", "c"]


def test_two_waiters_for_two_models_are_both_served():
    async def go():
        pool = make_pool(1, "a", "b", "c")
        await request(pool, "a")
        await asyncio.gather(request(pool, "b"), request(pool, "c"))
        return states(pool)
    st = run(go())
    assert st["a"] == "unloaded" and list(st.values()).count("loaded") == 1


def test_a_failed_load_fails_its_waiters_and_the_next_request_tries_again():
    async def go():
        pool = make_pool(0, "bad", "a")
        results = await asyncio.gather(request(pool, "bad"), request(pool, "bad"), request(pool, "a"),
                                       return_exceptions=True)
        again = await asyncio.gather(request(pool, "bad"), return_exceptions=True)
        return results, again, pool.get("bad")
    results, again, bad = run(go())
    assert [type(r) for r in results] == [LoadFailed, LoadFailed, type(None)]
    assert str(results[0]) == "model name=bad failed to load"
    assert isinstance(again[0], LoadFailed) and bad.attempts == 2 and bad.status()["exit_code"] == 1
