"""The engine loop in-process on a tiny synthetic model: context shift and its absence, prompt
progress events, a finished slot that is idle before its answer arrives, -tb's thread switching,
and a sleep that unloads the model and a task that brings it back."""

from __future__ import annotations

import queue
import time

import numba
import numpy as np
import pytest

from service.engine.engine import Engine
from service.engine.power import Power
from service.engine.task import EngineConfig, Final, Partial, StopType, Task, TaskParams
from service.model.model import Model
from service.sampling import SamplingParams
from tests.synthetic import Spec, write_model

GREEDY = SamplingParams(temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = write_model(tmp_path_factory.mktemp("engine") / "m.gguf", Spec(n_ctx=64))
    return Model(path, n_ctx=32, n_seq=2, max_batch=8)


def run(engine: Engine, **params) -> list:
    """Submit one task and collect its events up to the last one."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    engine.submit(Task(TaskParams(sampling=GREEDY, **params), events.put))
    out = []
    while not out or not isinstance(out[-1], Final):
        ev = events.get(timeout=60)
        assert not hasattr(ev, "kind"), ev  # a Failure
        out.append(ev)
    return out


def started(model, **config) -> Engine:
    e = Engine(model, EngineConfig(n_slots=2, **config))
    e.start()
    return e


def test_without_context_shift_a_full_slot_stops_truncated(model):
    e = started(model)
    try:
        final = run(e, prompt=tuple(range(2, 22)), n_predict=50)[-1]
        assert final.truncated and final.stop_type is StopType.LIMIT and 20 + final.n_predicted == 32
    finally:
        e.shutdown()


def test_with_context_shift_generation_goes_on(model):
    e = started(model, ctx_shift=True)
    try:
        final = run(e, prompt=tuple(range(2, 22)), n_predict=50, n_keep=4)[-1]
        assert final.n_predicted == 50 and final.truncated and final.stop_type is StopType.LIMIT
        assert max(len(s.cache_tokens) for s in e.slots) < 32
    finally:
        e.shutdown()


@pytest.mark.parametrize("meta", [{"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0}, None],
                         ids=["yarn", "llama3"])
def test_context_shift_is_off_with_scaled_rope(tmp_path, meta):
    """kvcache.shift turns keys back with plain RoPE: a YaRN or llama3-scaled model stops at the
    context's end as without --context-shift, rather than continue on wrongly turned keys."""
    extra = None if meta else {"rope_freqs.weight": np.full(8, 2.0, np.float32)}
    m = Model(write_model(tmp_path / "s.gguf", Spec(n_ctx=64), meta=meta, extra=extra), n_ctx=32, n_seq=2, max_batch=8)
    e = started(m, ctx_shift=True)
    try:
        final = run(e, prompt=tuple(range(2, 22)), n_predict=50, n_keep=4)[-1]
        assert final.truncated and final.stop_type is StopType.LIMIT and 20 + final.n_predicted == 32
    finally:
        e.shutdown()


def test_progress_events_come_before_the_tokens_and_the_slot_is_idle_at_the_end(model):
    e = started(model)
    try:
        events = run(e, prompt=tuple(range(2, 22)), n_predict=2, stream=True, return_progress=True,
                     timings_per_token=True)
        progress = [ev.progress for ev in events if isinstance(ev, Partial) and ev.progress is not None]
        assert [p.processed for p in progress] == [0, 8, 16, 20]  # the first before any pass; batches of 8
        assert all(p.total == 20 for p in progress) and events[0].timings.prompt_n == 0
        assert not e.n_busy  # the answer goes out once the slot is free
    finally:
        e.shutdown()


def test_threads_batch_switches_numba_threads_per_batch(model, monkeypatch):
    calls = []
    monkeypatch.setattr(numba, "set_num_threads", calls.append)
    e = started(model, threads=1, threads_batch=2)
    try:
        run(e, prompt=tuple(range(2, 12)), n_predict=3)
    finally:
        e.shutdown()
    assert calls == [2, 2, 1, 1]  # two prompt batches (8 + 2 tokens), then one-token decode steps


def test_sleep_unloads_the_model_and_a_task_reloads_it(model):
    e = started(model, sleep_idle_seconds=0.3)
    try:
        before = run(e, prompt=tuple(range(2, 12)), n_predict=6)[-1].content
        deadline = time.monotonic() + 10
        while e.power.state is not Power.SLEEPING:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert model.weights is None and model.cache is None and all(not s.cache_tokens for s in e.slots)
        assert run(e, prompt=tuple(range(2, 12)), n_predict=6)[-1].content == before
        assert model.weights is not None and e.power.state is Power.AWAKE
        e.power.want()  # awake: nothing to do
        assert e.power.state is Power.AWAKE
    finally:
        e.shutdown()
