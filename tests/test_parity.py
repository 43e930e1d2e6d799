"""Parity with llama.cpp on the real models (../shared/reference/*_greedy.jsonl).

For every reference prompt:
- the prompt tokenizes to llama.cpp's prompt_ids;
- greedy decoding follows llama.cpp's greedy_ids up to the first step where llama.cpp's
  own top two logits are within 0.5 of each other (past a near-tie, correct
  implementations diverge);
- at step 0, llama.cpp's top-10 logits are matched within LOGIT_TOL, and after removing
  the common offset (which softmax ignores) within SPREAD_TOL.

Measured (int8 activations, float32 KV cache): largest step-0 difference 0.55 on SmolLM2
and 0.82-1.05 on Gemma 3 (offset removed: 0.27 and 0.59). A float32-activation forward
differs from llama.cpp by as much (0.95 and 1.09): llama.cpp's own arithmetic (8-bit
activations, per-256 activation blocks for K-quants, float16 KV cache) moves logits by this
much. Gemma 3's residual stream reaches 1e5, so float32 rounding order alone moves its
logits: the same source compiled afresh or loaded from Numba's cache gives 1.05 or 0.82 on
"The quick brown fox". A tighter bound would test noise, not correctness; the greedy
agreement and the offset-free spread are the sharper checks.
"""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from service.model.model import Model

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT.parent / "shared" / "reference"
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
NEAR_TIE = 0.5
LOGIT_TOL = 1.25
SPREAD_TOL = 0.75


@lru_cache(maxsize=None)
def model(name: str) -> Model:
    return Model(ROOT / "models" / MODELS[name], n_ctx=256, n_seq=1, max_batch=64)


def cases():
    for name in MODELS:
        for i, line in enumerate((REF / f"{name}_greedy.jsonl").read_text().splitlines()):
            yield pytest.param(name, json.loads(line), id=f"{name}-{i}")


@pytest.mark.parametrize("name,ref", list(cases()))
def test_greedy_and_logits_match_llama_cpp(name, ref):
    check_parity(model(name), ref)


def check_parity(m: Model, ref: dict) -> None:
    """The prompt's tokens, step-0 logits and greedy ids against one llama.cpp reference line."""
    ids = m.tokenizer.tokenize(ref["prompt"], add_special=ref["add_bos"], parse_special=True)
    assert ids == ref["prompt_ids"]
    m.cache.clear(0)
    logits = m.eval(0, ids)
    top, want = ref["steps"][0]["top_ids"], np.array(ref["steps"][0]["top_logits"])
    diff = logits[top] - want
    assert np.abs(diff).max() <= LOGIT_TOL, diff
    assert np.abs(diff - diff.mean()).max() <= SPREAD_TOL, diff
    for step, want_tok in enumerate(ref["greedy_ids"]):
        best = ref["steps"][step]["top_logits"]
        if len(best) > 1 and best[0] - best[1] < NEAR_TIE:
            break
        tok = int(np.argmax(logits))
        assert tok == want_tok, f"step {step}: {tok} != {want_tok}"
        logits = m.eval(0, [tok])
