"""Parity with llama.cpp on the real models (../shared/reference/*_greedy.jsonl).

For every reference prompt:
- the prompt tokenizes to llama.cpp's prompt_ids;
- at EVERY reference step (24 per prompt), fed llama.cpp's own greedy tokens so that both sides
  see the same context, llama.cpp's top-10 logits are matched within the model's LOGIT bound,
  and after removing their common offset (which softmax ignores) within its SPREAD bound;
- at every step where llama.cpp's top two logits are more than NEAR_TIE apart, our argmax is
  llama.cpp's greedy token (past a near-tie correct implementations may pick either);
- at step 0, the order of llama.cpp's top 10 is ours too, except between two logits that
  llama.cpp puts within the model's TIE of each other; and no token outside its top 10 comes
  in above the lowest of them by more than TIE.

Bounds, measured on this machine (2-core x86, Dec 2026; int8 activations, f16 KV cache as
llama.cpp's default, which recorded the references), worst over all prompts and all 24 steps and
over both forms of our compiled code (see below), each set at 1.5x its measured figure:
- SmolLM2: largest |difference| 0.777 (kernels compiled in the process; 0.745 loaded from
  Numba's cache) -> 1.17; offset removed 0.639 (cached; 0.420 compiled) -> 0.96; step-0 swaps of
  llama.cpp's order only between logits it puts at most 0.285 apart -> TIE 0.45.
- Gemma 3: largest |difference| 1.910 (cached; 1.885 compiled) -> 2.9; offset removed 0.918
  (compiled; 0.741 cached) -> 1.4; step-0 swaps only between logits at most 0.714 apart -> TIE 1.1.
Every step where our argmax differs from llama.cpp's is a near-tie in llama.cpp (gap at most
0.24 on SmolLM2, 0.15 on Gemma 3); clear steps (gap >= NEAR_TIE = 0.5) all agree.
Two forms of the same code: a kernel compiled in this process and the same kernel loaded from
Numba's cache (written by another process) round differently (fastmath sums, FMA contraction
across inlined calls): measured, SmolLM2's hidden state after layer 0 differs by 7e-6 of 24,
and int8 activation rounding flips amplify that over 30 layers to up to 0.59 in a logit. Which
form a test gets depends on which process compiled first, so the bounds cover both. The float32
KV cache (our in-process default) measured 1.133 compiled and 0.690 cached on SmolLM2.
Gemma 3's residual stream reaches 1e5, and llama.cpp's own arithmetic (8-bit activations,
per-256 blocks for K-quants) differs from ours by that much more: its bound is wider.

What makes it fail: a tokenizer that splits differently; any kernel, cache or position error
that moves a logit by more than the bound at any of the 24 steps (an error in the KV cache
shows only past step 0, where the old test stopped looking); a wrong argmax at a clear step; a
reordering of clearly separated top candidates.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from service.model.model import Model

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT.parent / "shared" / "reference"
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
NEAR_TIE = 0.5


@dataclass(frozen=True)
class Bound:
    logit: float  # largest |ours - llama.cpp| over a step's top 10
    spread: float  # the same once the step's mean difference is removed
    tie: float  # step 0: llama.cpp's top-10 order may swap only between logits this close


BOUNDS = {"smollm2": Bound(logit=1.17, spread=0.96, tie=0.45),  # measured 0.777, 0.639, 0.285
          "gemma3": Bound(logit=2.9, spread=1.4, tie=1.1)}  # measured 1.910, 0.918, 0.714


@lru_cache(maxsize=None)
def model(name: str) -> Model:
    return Model(ROOT / "models" / MODELS[name], n_ctx=256, n_seq=1, max_batch=64, cache_types=("f16", "f16"))


def cases():
    for name in MODELS:
        for i, line in enumerate((REF / f"{name}_greedy.jsonl").read_text().splitlines()):
            yield pytest.param(name, json.loads(line), id=f"{name}-{i}")


@pytest.mark.parametrize("name,ref", list(cases()))
def test_greedy_and_logits_match_llama_cpp(name, ref):
    check_parity(model(name), ref, name)


def check_order(logits: np.ndarray, top: list[int], want: np.ndarray, tie: float) -> None:
    """llama.cpp's top-k order holds in ours except between near-ties (within `tie` in llama.cpp)."""
    ours = logits[top]
    for i in range(len(top)):
        for j in range(i + 1, len(top)):
            if want[i] - want[j] > tie:
                assert ours[i] > ours[j], f"top-k order: {top[i]} ({want[i]}) now below {top[j]} ({want[j]})"
    outside = [int(t) for t in np.argsort(-logits)[: len(top)] if t not in top]
    for t in outside:
        assert logits[t] <= ours.min() + tie, f"token {t} ({logits[t]}) outside llama.cpp's top {len(top)}"


def check_parity(m: Model, ref: dict, name: str) -> None:
    """Tokens, the logits at every step, the greedy ids and the step-0 order against one reference line."""
    bound = BOUNDS[name]
    ids = m.tokenizer.tokenize(ref["prompt"], add_special=ref["add_bos"], parse_special=True)
    assert ids == ref["prompt_ids"]
    m.cache.clear(0)
    logits = m.eval(0, ids)
    for step, want_tok in enumerate(ref["greedy_ids"]):
        top, want = ref["steps"][step]["top_ids"], np.array(ref["steps"][step]["top_logits"])
        diff = logits[top] - want
        assert np.abs(diff).max() <= bound.logit, (step, diff)
        assert np.abs(diff - diff.mean()).max() <= bound.spread, (step, diff)
        if step == 0:
            check_order(logits, top, want, bound.tie)
        if len(want) < 2 or want[0] - want[1] >= NEAR_TIE:
            tok = int(np.argmax(logits))
            assert tok == want_tok, f"step {step}: {tok} != {want_tok}"
        logits = m.eval(0, [want_tok])  # llama.cpp's token: the next step has its context
