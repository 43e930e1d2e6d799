"""--max-queue's bookkeeping: a request's tasks are held all or none, a refusal is counted and
holds nothing, an ended task frees its place once however often it is reported, 0 is no bound."""

from __future__ import annotations

import pytest

from service.engine.admission import Admission
from service.engine.task import QueueFull, Task, TaskParams


def tasks(n: int) -> tuple[Task, ...]:
    return tuple(Task(TaskParams(prompt=(1,)), lambda ev: None) for _ in range(n))


def test_slots_plus_queue_then_refused_as_a_whole_and_counted():
    refused = []
    a = Admission(n_slots=1, max_queue=2, on_refused=lambda: refused.append(1))
    first = tasks(2)
    a.take(first)
    with pytest.raises(QueueFull, match="1 slots and a queue of 2"):
        a.take(tasks(2))  # 4 > 3: neither task is held
    assert len(a) == 2 and refused == [1]
    a.take(tasks(1))
    assert len(a) == 3
    a.gone(first[0])
    a.gone(first[0])  # reported twice: freed once
    assert len(a) == 2
    a.take(tasks(1))


def test_zero_is_no_bound():
    a = Admission(n_slots=1, max_queue=0)
    a.take(tasks(50))
    assert len(a) == 50
