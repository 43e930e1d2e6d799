"""Greedy generation through the engine API on the real SmolLM2 model."""

import json
from pathlib import Path

import pytest

from service.model.generate import Stop, greedy, run_all
from service.model.model import Model
from service.sampling import Sampler, SamplingParams

ROOT = Path(__file__).resolve().parent.parent
REF = [json.loads(s) for s in (ROOT.parent / "shared" / "reference" / "smollm2_greedy.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def model():
    return Model(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=128, n_seq=4, max_batch=32)


_run = run_all


def test_batched_sequences_equal_separate_runs(model):
    prompts = [r["prompt_ids"] for r in REF[:3]]
    together, stops = _run(model, prompts, 12)
    for i, p in enumerate(prompts):
        alone, _ = _run(model, [p], 12)
        assert together[i] == alone[0]
    assert all(stops[i] in (Stop.LIMIT, Stop.EOS) for i in range(3))
    # the reference's first token (no near-tie at step 0 for these prompts)
    assert together[0][0] == REF[0]["greedy_ids"][0]


def test_stops_at_n_predict(model):
    out, stops = _run(model, [REF[0]["prompt_ids"]], 5)
    assert len(out[0]) == 5 and stops[0] is Stop.LIMIT


def test_stops_at_end_of_generation(model):
    # The chat prompt's reference continuation ends with <|im_end|> before 24 tokens.
    r = next(r for r in REF if len(r["greedy_ids"]) < 24)
    out, stops = _run(model, [r["prompt_ids"]], 64)
    assert stops[0] is Stop.EOS and model.tokenizer.is_eog(out[0][-1])


def test_stops_at_context_limit(model):
    prompt = REF[5]["prompt_ids"]  # "1, 2, 3, 4, 5," counts on and on
    out, stops = _run(model, [prompt], -1)
    assert stops[0] is Stop.CONTEXT
    assert len(prompt) + len(out[0]) == model.n_ctx


def test_bad_requests(model):
    with pytest.raises(ValueError):
        next(greedy(model, [[1]] * 5))
    with pytest.raises(ValueError):
        next(greedy(model, [[]]))
    with pytest.raises(ValueError):
        model.eval(0, [model.cfg.n_vocab])


def _samplers(model, seeds, **kw):
    return [Sampler(SamplingParams(seed=s, **kw), model.cfg.n_vocab, eog_ids=model.tokenizer.eog_ids,
                    n_ctx=model.n_ctx) for s in seeds]


def test_sampler_at_temperature_zero_is_greedy(model):
    prompts = [REF[1]["prompt_ids"]]
    assert _run(model, prompts, 8, _samplers(model, [7], temperature=0.0))[0] == _run(model, prompts, 8)[0]


def test_seeded_sampling_is_independent_of_batch_neighbours(model):
    prompts = [REF[0]["prompt_ids"], REF[2]["prompt_ids"], REF[6]["prompt_ids"]]
    together, _ = _run(model, prompts, 10, _samplers(model, [11, 22, 33], temperature=1.0))
    for i, seed in enumerate([11, 22, 33]):
        alone, _ = _run(model, [prompts[i]], 10, _samplers(model, [seed], temperature=1.0))
        assert together[i] == alone[0]
    other_seed, _ = _run(model, [prompts[0]], 10, _samplers(model, [12], temperature=1.0))
    assert other_seed[0] != together[0]  # the seed matters (10 tokens at temperature 1)
