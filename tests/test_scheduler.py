"""Slot choice (llama-server's get_available_slot: -sps similarity, then LRU) and batch building
(continuous batching on and off)."""

from __future__ import annotations

from types import SimpleNamespace

from service.engine.scheduler import build_batch, pick_slot
from service.engine.slot import Slot, SlotState
from service.engine.task import Task, TaskParams


def task(prompt, id_slot: int = -1) -> Task:
    return Task(TaskParams(prompt=tuple(prompt), id_slot=id_slot), lambda ev: None)


def slots(*caches, used=None) -> list[Slot]:
    out = [Slot(i, 64) for i in range(len(caches))]
    for s, c in zip(out, caches):
        s.cache_tokens = list(c)
    for s, t in zip(out, used or []):
        s.last_used = t
    return out


def test_similarity_picks_the_slot_holding_most_of_the_prompt():
    ss = slots([1, 2, 3, 4, 5], [1, 2, 9], [], used=[2.0, 1.0, 3.0])
    s, update = pick_slot(ss, task([1, 2, 3, 4, 5, 6, 7, 8]), 0.1)
    assert s.id == 0 and not update  # 5/8 of the prompt; keeps all of the slot's tokens
    s, update = pick_slot(ss, task([1, 2, 6, 7, 8, 9, 10, 11, 12, 13]), 0.1)
    assert s.id == 0 and update  # a tie goes to the first; it keeps 2 of its 5 tokens: < half, so the RAM cache updates
    s, update = pick_slot(ss, task([1, 2, 6, 7, 8, 9, 10, 11, 12, 13]), 0.25)
    assert s.id == 1 and update  # 2/10 is not above 0.25: the least recently used instead


def test_lru_takes_the_oldest_idle_slot_and_the_last_of_equals():
    ss = slots([], [], [], used=[-1.0, -1.0, -1.0])
    s, update = pick_slot(ss, task([5, 6]), 0.1)
    assert s.id == 2 and update  # llama-server's scan keeps the last slot of equal age
    ss = slots([7], [8], [9], used=[3.0, 1.0, 2.0])
    assert pick_slot(ss, task([5, 6]), 0.1)[0].id == 1
    ss[1].state = SlotState.GENERATING
    assert pick_slot(ss, task([5, 6]), 0.0)[0].id == 2  # -sps 0: LRU only


def test_a_pinned_slot_is_used_or_waited_for():
    ss = slots([1, 2, 3], [1, 2, 3, 4], used=[1.0, 2.0])
    s, update = pick_slot(ss, task([1, 2, 3, 4], id_slot=0), 0.1)
    assert s.id == 0 and not update  # the similarity only looks at the pinned slot
    ss[0].state = SlotState.PROMPT
    assert pick_slot(ss, task([1, 2, 3, 4], id_slot=0), 0.1) == (None, False)


def prompting(s: Slot, prompt, lora=()) -> None:
    s.state = SlotState.PROMPT
    s.gen = SimpleNamespace(params=TaskParams(prompt=tuple(prompt)), lora=lora)
    s.i_prompt = 0


def generating(s: Slot, tokens, lora=()) -> None:
    s.state = SlotState.GENERATING
    s.gen = SimpleNamespace(params=TaskParams(prompt=tuple(tokens[:1])), lora=lora)
    s.cache_tokens = list(tokens)


def test_continuous_batching_mixes_decode_tokens_and_prompts():
    ss = slots([], [], [])
    generating(ss[0], [1, 2, 3])
    prompting(ss[1], [4, 5, 6, 7])
    prompting(ss[2], [8, 9])
    batch, rows = build_batch(ss, 6)
    assert batch.tokens.tolist() == [3, 4, 5, 6, 7, 8] and batch.pos.tolist() == [2, 0, 1, 2, 3, 0]
    assert [(s.id, n, want) for s, n, want in rows] == [(0, 1, True), (1, 4, True), (2, 1, False)]


def test_without_continuous_batching_prompts_wait_for_the_decodes():
    ss = slots([], [], [])
    generating(ss[0], [1, 2, 3])
    prompting(ss[1], [4, 5, 6, 7])
    batch, rows = build_batch(ss, 6, cont_batching=False)
    assert batch.tokens.tolist() == [3] and [s.id for s, _, _ in rows] == [0]
    ss[0].state = SlotState.IDLE
    prompting(ss[2], [8, 9])
    batch, rows = build_batch(ss, 16, cont_batching=False)  # no decode: every prompt may go in
    assert batch.tokens.tolist() == [4, 5, 6, 7, 8, 9]


def test_each_token_carries_its_slots_lora_scales():
    ss = slots([], [], [])
    generating(ss[0], [1, 2, 3], lora=(1.0, 0.0))
    prompting(ss[1], [4, 5], lora=(0.0, 0.5))
    batch, _ = build_batch(ss, 8)
    assert batch.lora.tolist() == [[1.0, 0.0], [0.0, 0.5], [0.0, 0.5]]
    ss = slots([], [])
    prompting(ss[0], [4, 5])  # no adapters loaded: no scales
    assert build_batch(ss, 8)[0].lora is None
