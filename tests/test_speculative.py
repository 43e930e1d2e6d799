"""N-gram speculative decoding (service.engine.speculative): the draft rule against a plain
transcription of it, the draft's limits, verification's acceptance and KV cut, the batch a drafted
slot feeds, and the engine in-process on a tiny synthetic model: the same tokens with and without
speculation, with drafts accepted."""

from __future__ import annotations

import queue
from types import SimpleNamespace

import numpy as np
import pytest

from service.engine.engine import Engine
from service.engine.scheduler import build_batch
from service.engine.slot import Slot, SlotState
from service.engine.speculative import DraftStats, SpecConfig, draft_for, ngram_draft, verify
from service.engine.task import EngineConfig, Final, Partial, StopType, Task, TaskParams
from service.model.forward import Batch
from service.model.model import Model
from service.sampling import SamplingParams
from tests.synthetic import Spec, write_model


def reference_draft(hist: list[int], sampled: int, n: int, m: int) -> list[int]:
    """The rule, spelled out: the final n-gram is hist[-(n-1):] + [sampled]; find its latest
    earlier start j >= 1 that ends before the final one; take what follows, at most m tokens,
    and nothing when fewer than n follow or the history is not longer than n + m + 1."""
    if len(hist) <= n + m + 1:
        return []
    gram = hist[len(hist) - n + 1 :] + [sampled]
    for j in range(len(hist) - n - 1, 0, -1):
        if hist[j : j + n] == gram:
            after = hist[j + n : j + n + m]
            return after if len(after) >= n else []
    return []


def draft(hist, sampled, n, m):
    return ngram_draft(np.asarray(hist, np.int64), sampled, n, m)


def test_the_tokens_after_the_ngram_are_drafted():
    assert draft([9, 1, 2, 3, 4, 5, 6, 7, 1], 2, 2, 3) == [3, 4, 5]
    # the latest earlier occurrence wins
    assert draft([9, 1, 2, 3, 3, 3, 1, 2, 4, 4, 4, 0, 1], 2, 2, 3) == [4, 4, 4]
    # at most m tokens, and only tokens before the final n-gram
    assert draft([9, 1, 2, 3, 4, 5, 6, 7, 8, 1], 2, 2, 4) == [3, 4, 5, 6]


def test_no_draft_when_the_rule_says_none():
    assert draft([9, 1, 2, 3, 4, 1], 2, 2, 3) == []  # 6 tokens: not more than n + m + 1
    assert draft([1, 2, 9, 8, 7, 6, 5, 4, 1], 2, 2, 3) == []  # only at position 0, which is not searched
    assert draft([5, 6, 7, 8, 9, 0, 1, 2, 1], 2, 2, 3) == []  # one token follows the match: fewer than n
    hist = [0, 5, 1, 2, 3, 4, 5, 6, 7, 5, 1]
    assert draft(hist, 2, 3, 3) == [3, 4, 5] and draft(hist, 2, 3, 2) == []  # m < n: never enough tokens
    assert draft([9, 1, 2, 3, 4, 5, 6, 7, 8, 1], 5, 2, 3) == []  # the n-gram occurs nowhere


@pytest.mark.parametrize("n,m", [(1, 1), (2, 3), (3, 8), (4, 2), (12, 48)])
def test_the_draft_matches_the_rule_on_random_histories(n, m):
    rng = np.random.default_rng(n * 100 + m)
    for _ in range(300):
        length = int(rng.integers(0, 120))
        hist = rng.integers(0, 3, length).tolist()  # a small alphabet: many matches
        sampled = int(rng.integers(0, 3))
        assert draft(hist, sampled, n, m) == reference_draft(hist, sampled, n, m), (hist, sampled)


def gen_slot(tokens, n_ctx=64, n_remain=-1, n_max=-1, n_min=0):
    s = Slot(0, n_ctx)
    s.state = SlotState.GENERATING
    s.cache_tokens = list(tokens)
    s.gen = SimpleNamespace(params=TaskParams(prompt=(1,), spec_n_max=n_max, spec_n_min=n_min), n_remain=n_remain,
                            drafts=DraftStats(), lora=(), stopped=False)
    return s


REPEAT = [7, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 1, 2]  # ... 1 2 -> 3 4 5 6 8 9 10 ...
CFG = SpecConfig(("ngram-simple",), 2, 8)


def test_draft_for_keeps_within_the_slots_limits():
    assert draft_for(gen_slot(REPEAT), 100, CFG) == [3, 4, 5, 6, 8, 9, 10, 11]
    assert draft_for(gen_slot(REPEAT), 3, CFG) == [3, 4, 5]  # the batch's room
    assert draft_for(gen_slot(REPEAT, n_remain=4), 100, CFG) == [3, 4, 5]  # the last token needs no draft
    assert draft_for(gen_slot(REPEAT, n_ctx=len(REPEAT) + 3), 100, CFG) == [3, 4]  # a position stays free
    assert draft_for(gen_slot(REPEAT, n_max=5), 100, CFG) == [3, 4, 5, 6, 8]  # the request's speculative.n_max
    assert draft_for(gen_slot(REPEAT, n_max=0), 100, CFG) == []  # ... 0: no speculation for it
    assert draft_for(gen_slot(REPEAT, n_max=1, n_min=2), 100, CFG) == []  # shorter than speculative.n_min
    s = gen_slot(REPEAT)
    s.cache_tokens[4] = -1  # an image row's placeholder: the draft stops before it
    assert draft_for(s, 100, CFG) == [3]
    assert s.gen.drafts.n_drafted == 1


class Script:
    """take() that returns scripted tokens, as the sampler would, and records what verify does."""

    def __init__(self, slot, tokens, stop_at=None):
        self.slot, self.tokens, self.stop_at = slot, list(tokens), stop_at
        self.log = []
        self.keep = lambda sid, n: self.log.append(("keep", n))

    def take(self, slot, logits, row):
        tok = self.tokens[len([e for e in self.log if e[0] == "take"])]
        self.log.append(("take", row))
        slot.cache_tokens.append(tok)
        if len(slot.cache_tokens) == self.stop_at:
            slot.gen.stopped = True
        return tok

    def emit(self, slot):
        self.log.append(("emit",))


def run_verify(draft_, sampled, stop_at=None):
    s = gen_slot([1, 2, 3])  # KV holds 2 rows; token 3 is fed first, at position 2
    sc = Script(s, sampled, stop_at)
    verify(s, draft_, None, 5, SimpleNamespace(keep=sc.keep), 4, sc.take, sc.emit)
    return s, sc.log


def test_verify_takes_the_draft_while_it_holds_and_the_first_other_token():
    s, log = run_verify([4, 5, 6], [4, 5, 9])
    assert s.cache_tokens == [1, 2, 3, 4, 5, 9]
    assert log == [("take", 5), ("emit",), ("take", 6), ("emit",), ("take", 7), ("keep", 5),
                   ("emit",)]  # rows past the accepted drafts are cut before the task may end
    d = s.gen.drafts
    assert (d.n_accepted, d.n_steps, d.per_pos) == (2, 1, [1, 1, 0, 0])


def test_verify_takes_one_token_past_a_whole_draft_and_stops_where_the_task_does():
    s, log = run_verify([4, 5], [4, 5, 6])
    assert s.cache_tokens == [1, 2, 3, 4, 5, 6] and s.gen.drafts.n_accepted == 2
    assert [e for e in log if e[0] == "take"] == [("take", 5), ("take", 6), ("take", 7)]
    s, log = run_verify([4, 5, 6], [4, 5, 6, 7], stop_at=4)  # e.g. n_predict reached on the first drafted token
    assert s.cache_tokens == [1, 2, 3, 4] and log[-2:] == [("keep", 3), ("emit",)] and log.count(("emit",)) == 1
    assert s.gen.drafts.n_accepted == 1


def test_a_drafted_slot_feeds_its_draft_after_its_token_with_logits_at_each():
    ss = [Slot(i, 64) for i in range(3)]
    for s, toks in zip(ss, ([1, 2, 3], [4, 5], [6, 7, 8, 9])):
        s.state, s.cache_tokens = SlotState.GENERATING, toks
        s.gen = SimpleNamespace(lora=())
    rooms = []

    def drafter(s, room):
        rooms.append(room)
        return [50, 51][:room] if s.id != 1 else []

    batch, rows = build_batch(ss, 7, drafter=drafter)
    assert rooms == [4, 2, 2]  # each later slot's own token is kept aside
    assert batch.tokens.tolist() == [3, 50, 51, 5, 9, 50, 51] and batch.want.all()
    assert batch.pos.tolist() == [2, 3, 4, 1, 3, 4, 5] and batch.seq.tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert [(s.id, n) for s, n, _ in rows] == [(0, 3), (1, 1), (2, 3)] and ss[1].draft == []
    assert batch.alone.tolist() == [True] * 3 + [False] + [True] * 3  # drafted runs attend a query at a time


def test_a_drafted_run_gives_the_logits_of_one_token_steps(tmp_path):
    """head_dim 64: several queries of one run would share attention tiles (kernels.attention), which
    round differently from the one-query path of decode steps; a run marked alone does not."""
    spec = Spec(n_embd=256, n_head=4, n_head_kv=2, n_ff=256, n_ctx=128, seed=7)
    m = Model(write_model(tmp_path / "w.gguf", spec), n_ctx=64, n_seq=1, max_batch=16)
    toks = list(range(2, 28))
    m.eval(0, toks[:20])
    steps = np.stack([m.eval(0, [t]) for t in toks[20:]])  # (6, n_vocab): one token at a time
    m.cache.keep(0, 20)
    n = len(toks) - 20
    out = m.forward(Batch(np.array(toks[20:], np.int32), np.zeros(n, np.int32), np.arange(20, 26, dtype=np.int32),
                          np.ones(n, bool), alone=np.ones(n, bool)))
    assert np.array_equal(out.logits.host(), steps)


# -- the engine, in-process -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # an output head of its own: a tied one makes a random model repeat one token, which drafts nothing
    path = write_model(tmp_path_factory.mktemp("spec") / "m.gguf", Spec(n_ctx=256, seed=0, tied=False))
    return Model(path, n_ctx=128, n_seq=2, max_batch=32)


PROMPT = tuple([1] + [10, 11, 12, 13, 14, 15, 16, 17, 18, 19] * 3)


def run(model, spec: SpecConfig, n_slots=1, **params) -> list:
    e = Engine(model, EngineConfig(n_slots=n_slots, spec=spec))
    e.start()
    try:
        events: queue.SimpleQueue = queue.SimpleQueue()
        e.submit(Task(TaskParams(**params), events.put))
        out = []
        while not out or not isinstance(out[-1], Final):
            ev = events.get(timeout=120)
            assert not hasattr(ev, "kind"), ev  # a Failure
            out.append(ev)
        s = e.slots[0]
        assert int(model.cache.length[0]) == len(s.cache_tokens)  # no rejected row survives the task
        return out
    finally:
        e.shutdown()


ON = SpecConfig(("ngram-simple",), 3, 8)
OFF = SpecConfig()


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.0, ignore_eos=True),
                                      SamplingParams(temperature=0.1, seed=1, ignore_eos=True)],
                         ids=["greedy", "seeded"])
def test_speculation_changes_no_token_and_drafts_get_accepted(model, sampling):
    kw = dict(prompt=PROMPT, sampling=sampling, n_predict=60, n_probs=2)
    plain, spec = run(model, OFF, **kw)[-1], run(model, ON, **kw)[-1]
    assert [t.id for t in spec.tokens] == [t.id for t in plain.tokens] and spec.content == plain.content
    assert spec.n_predicted == 60 and spec.stop_type is StopType.LIMIT
    for a, b in zip(spec.tokens, plain.tokens):
        assert a.probs.top_ids.tolist() == b.probs.top_ids.tolist()
        np.testing.assert_allclose(a.probs.top_probs, b.probs.top_probs, rtol=1e-5)
    t = spec.timings
    assert t.draft_n > 0 and 0 < t.draft_n_accepted <= t.draft_n and plain.timings.draft_n == 0


def test_a_stream_sends_every_accepted_token_in_order(model):
    kw = dict(prompt=PROMPT, sampling=SamplingParams(temperature=0.0, ignore_eos=True), n_predict=40)
    whole = run(model, ON, **kw)[-1]
    events = run(model, ON, stream=True, **kw)
    parts = [ev for ev in events if isinstance(ev, Partial)]
    assert [t.id for p in parts for t in p.tokens] == [t.id for t in whole.tokens]
    assert "".join(p.content for p in parts) + events[-1].unsent == whole.content
    assert events[-1].timings.draft_n_accepted > 0
