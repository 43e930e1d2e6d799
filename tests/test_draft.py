"""Speculative decoding with a draft model (service.engine.draft): the vocabulary check, the draft
rule (greedy, p_min, n_max, n_min) against the draft model's own one-token steps, its cache kept in
step with a slot's tokens, the engine in-process on tiny synthetic models (the same tokens with and
without a draft model, a strong and a weak draft, two slots, a context shift), and the server's
refusals at start (CLI subprocesses: exit 1 with the reason)."""

from __future__ import annotations

import queue
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from service.engine.draft import DraftModel, top_token, vocab_mismatch
from service.engine.engine import Engine
from service.engine.speculative import SpecConfig
from service.engine.task import EngineConfig, Final, Partial, StopType, Task, TaskParams
from service.gguf_reader import read_gguf
from service.model.model import Model
from service.sampling import SamplingParams
from service.tokenizer import Tokenizer
from tests.server_proc import GEMMA3, ROOT, SMOLLM2, free_port
from tests.synthetic import MATRICES, Spec, write_model


def tok(path) -> Tokenizer:
    return Tokenizer.from_metadata(read_gguf(path).metadata)


def fake(n=20, vtype="bpe", add_bos=False, bos=1, add_eos=False, eos=2, texts=None):
    texts = texts or [f"t{i}" for i in range(n)]
    return SimpleNamespace(vocab_type=vtype, add_bos=add_bos, bos_id=bos, add_eos=add_eos, eos_id=eos, n_vocab=len(texts),
                           token_text=lambda i: texts[i])


def test_vocabularies_must_match_as_llama_cpp_checks():
    base = fake()
    assert vocab_mismatch(base, fake()) is None
    assert "vocabulary type spm, the model's is bpe" in vocab_mismatch(base, fake(vtype="spm"))
    assert vocab_mismatch(fake(add_bos=True), fake(add_bos=True, bos=3)).startswith("BOS: add True, token 3")
    assert vocab_mismatch(base, fake(bos=3)) is None  # a BOS that is never added may differ
    assert vocab_mismatch(base, fake(add_eos=True)).startswith("EOS")
    assert vocab_mismatch(fake(200), fake(200 + 128)) is None  # sizes may differ by 128 ...
    assert "329 tokens, the model has 200" in vocab_mismatch(fake(200), fake(329))  # ... not more
    texts = [f"t{i}" for i in range(20)]
    assert vocab_mismatch(base, fake(texts=["x"] * 5 + texts[5:])) is None  # ids below 5 are not compared
    assert vocab_mismatch(base, fake(texts=texts[:7] + ["y"] + texts[8:])) == "token 7 is 'y', the model's is 't7'"
    assert vocab_mismatch(tok(SMOLLM2), tok(SMOLLM2)) is None
    assert vocab_mismatch(tok(SMOLLM2), tok(GEMMA3)) == "vocabulary type spm, the model's is bpe"


def test_a_tokens_probability_is_taken_among_the_ten_most_likely():
    row = np.full(100, -50.0, np.float32)
    row[7], row[3] = 2.0, 1.0
    t, p = top_token(row)
    assert t == 7 and p == pytest.approx(np.exp(2) / (np.exp(2) + np.exp(1) + 8 * np.exp(-50)))
    row[:12] = 0.0  # twelve equal logits: one of ten
    assert top_token(row) == (0, pytest.approx(0.1))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """(main, weak draft): a random llama model, and the same weights in Q4_0 (which picks another greedy
    token than the main model's about one time in three)."""
    d = tmp_path_factory.mktemp("draft")
    return (write_model(d / "main.gguf", Spec(n_ctx=256, seed=0, tied=False)),
            write_model(d / "weak.gguf", Spec(n_ctx=256, seed=0, tied=False, types=dict.fromkeys(MATRICES, T.Q4_0))))


@pytest.fixture(scope="module")
def main(paths):
    return Model(paths[0], n_ctx=128, n_seq=2, max_batch=32)


def greedy(model: Model, seq: int, tokens: list[int], n: int) -> list[int]:
    """The model's own n greedy tokens after `tokens`, one step at a time (its cache left at `tokens`...)."""
    model.cache.clear(seq)
    row, out = model.eval(seq, tokens), []
    for _ in range(n):
        out.append(int(np.argmax(row)))
        row = model.eval(seq, [out[-1]])
    model.cache.clear(seq)
    return out


PROMPT = [1] + [10, 11, 12, 13, 14, 15, 16, 17, 18, 19] * 2


def test_the_draft_is_the_draft_models_greedy_run_within_its_limits(paths, main):
    d = DraftModel(Model(paths[0], n_ctx=128, n_seq=2, max_batch=32), n_max=6, n_min=0, p_min=0.0)
    want = greedy(main, 0, PROMPT, 6)
    assert d.draft(0, PROMPT, 99) == want  # --spec-draft-n-max caps ...
    assert d.draft(1, PROMPT, 4) == want[:4]  # ... and so does the slot's limit
    assert d.draft(0, PROMPT, 0) == [] and d.draft(0, PROMPT + [-1], 3) == []  # no room; an image row
    d.n_min = 5
    assert d.draft(1, PROMPT, 4) == []  # shorter than -n-min: dropped
    d.n_min, d.p_min = 0, 1.01
    assert d.draft(0, PROMPT, 4) == []  # no token is that likely
    rows = [main.eval(1, PROMPT)] + [main.eval(1, [t]) for t in want[:5]]
    main.cache.clear(1)
    probs = [top_token(r)[1] for r in rows]
    d.p_min = (probs[2] + 1e-6) if probs[2] < min(probs[:2]) else 0.0
    cut = next((i for i, p in enumerate(probs) if p < d.p_min), 6)
    assert d.draft(0, PROMPT, 6) == want[:cut]  # it stops before the first token under p_min


def test_the_draft_cache_follows_the_slots_tokens(paths, main):
    m = Model(paths[0], n_ctx=128, n_seq=1, max_batch=32)
    d = DraftModel(m, n_max=4, n_min=0, p_min=0.0)
    first = d.draft(0, PROMPT, 4)
    assert d.held[0] == PROMPT + first[:-1] and int(m.cache.length[0]) == len(PROMPT) + 3  # the last is not fed
    for tokens in (PROMPT + first[:2] + [5],  # two accepted, then another token: rows cut, one read
                   PROMPT[:8] + [3, 4, 5],  # another prompt that shares a prefix
                   [2] + PROMPT[1:] + first,  # a changed first token (a context shift, a restored slot)
                   PROMPT):  # back to a shorter history
        assert d.draft(0, tokens, 4) == greedy(main, 1, tokens, 4), tokens
        assert int(m.cache.length[0]) == len(d.held[0]) == len(tokens) + 3


def run(model, spec: SpecConfig, draft: DraftModel | None, n_slots=1, ctx_shift=False, **params) -> list[list]:
    """Each of n_slots copies of one request, run at once: the events of each."""
    e = Engine(model, EngineConfig(n_slots=n_slots, spec=spec, draft=draft, ctx_shift=ctx_shift))
    e.start()
    try:
        qs = [queue.SimpleQueue() for _ in range(n_slots)]
        for q in qs:
            e.submit(Task(TaskParams(**params), q.put))
        outs = []
        for q in qs:
            out = []
            while not out or not isinstance(out[-1], Final):
                ev = q.get(timeout=300)
                assert not hasattr(ev, "kind"), ev  # a Failure
                out.append(ev)
            outs.append(out)
        for s in e.slots:
            assert int(model.cache.length[s.id]) == len(s.cache_tokens)  # no rejected row survives
        return outs
    finally:
        e.shutdown()


DRAFT = SpecConfig(("draft-simple",), n_max=4)


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.0, ignore_eos=True),
                                      SamplingParams(temperature=0.7, seed=3, ignore_eos=True)],
                         ids=["greedy", "seeded"])
def test_a_draft_model_changes_no_token(paths, main, sampling):
    kw = {"prompt": tuple(PROMPT), "sampling": sampling, "n_predict": 40, "n_probs": 2}
    plain = run(main, SpecConfig(), None, **kw)[0][-1]
    same = DraftModel(Model(paths[0], n_ctx=128, n_seq=1, max_batch=32), 4, 0, 0.0)
    weak = DraftModel(Model(paths[1], n_ctx=128, n_seq=1, max_batch=32), 4, 0, 0.0)
    for d in (same, weak):
        spec = run(main, DRAFT, d, **kw)[0][-1]
        assert [t.id for t in spec.tokens] == [t.id for t in plain.tokens] and spec.content == plain.content
        for a, b in zip(spec.tokens, plain.tokens):
            np.testing.assert_allclose(a.probs.top_probs, b.probs.top_probs, rtol=1e-5)
        assert spec.n_predicted == 40 and spec.stop_type is StopType.LIMIT
    t_same, t_weak = run(main, DRAFT, same, **kw)[0][-1].timings, run(main, DRAFT, weak, **kw)[0][-1].timings
    assert 0 < t_weak.draft_n_accepted < t_weak.draft_n, t_weak  # a weak draft is partly wrong ...
    if sampling.temperature == 0:  # ... the model itself, greedy, always right
        assert t_same.draft_n_accepted == t_same.draft_n >= 30, t_same
    assert plain.timings.draft_n == 0


def test_two_slots_and_a_stream_with_a_draft_model(paths, main):
    kw = {"prompt": tuple(PROMPT), "sampling": SamplingParams(temperature=0.0, ignore_eos=True), "n_predict": 30}
    plain = run(main, SpecConfig(), None, **kw)[0][-1]
    d = DraftModel(Model(paths[1], n_ctx=128, n_seq=2, max_batch=32), 3, 0, 0.0)
    for events in run(main, DRAFT, d, n_slots=2, stream=True, **kw):
        parts = [ev for ev in events if isinstance(ev, Partial)]
        assert [t.id for p in parts for t in p.tokens] == [t.id for t in plain.tokens]
        assert events[-1].timings.draft_n > 0


def test_a_context_shift_rebuilds_the_draft_cache(paths, main):
    kw = {"prompt": tuple(PROMPT), "sampling": SamplingParams(temperature=0.0, ignore_eos=True), "n_predict": 200}
    plain = run(main, SpecConfig(), None, ctx_shift=True, **kw)[0][-1]
    m = Model(paths[0], n_ctx=128, n_seq=1, max_batch=32)
    spec = run(main, DRAFT, DraftModel(m, 4, 0, 0.0), ctx_shift=True, **kw)[0][-1]
    assert plain.truncated and spec.truncated and spec.n_predicted == 200
    assert [t.id for t in spec.tokens] == [t.id for t in plain.tokens]
    # the draft re-reads the shifted history, where the main model keeps its shifted rows (whose values
    # still saw the dropped tokens): the two part ways a little, and the draft is still mostly right
    t = spec.timings
    assert t.draft_n >= 150 and t.draft_n_accepted > t.draft_n * 2 // 3, t


def cli(*args: str) -> subprocess.CompletedProcess:
    argv = ["-m", str(SMOLLM2), "--port", str(free_port()), "-c", "256", "-ngl", "0", "-ngld", "0", "--no-warmup"]
    return subprocess.run([sys.executable, "-m", "service.cli", *argv, *args], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=300)


def test_the_server_refuses_a_draft_model_with_another_vocabulary_and_exits_1():
    r = cli("-md", str(GEMMA3), "--spec-type", "draft-simple")
    log = r.stdout + r.stderr
    assert r.returncode == 1, log
    assert "cannot draft for" in log and "the vocabularies differ (vocabulary type spm, the model's is bpe)" in log
    r = cli("--spec-type", "draft-simple")
    assert r.returncode == 1 and "--spec-type draft-simple needs a draft model" in r.stdout + r.stderr
