"""Our model against llama-server's recorded greedy steps (the fixtures of
tests/fixtures/record_rope_scaling.py and record_archs.py): the recorded models written again and
loaded, and teacher-forced logprobs of one prefill over the prompt and llama.cpp's continuation,
compared on its top-10 of every step.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from service.gguf_reader import read_gguf
from service.model.config import config_from_metadata
from service.model.forward import Batch, Forward
from service.model.kvcache import KVCache
from service.model.weights import load_weights

EOS = 1  # tests.synthetic's eos_token_id: the recorders ask llama.cpp to ignore it


def load_recorded(d: Path, cases, write_case, fixture: dict, writer: str) -> dict:
    """Each of cases written by write_case(d, name), held to the sha256 the fixture recorded (writer: the module
    that writes them, named when the file differs), read and loaded: name -> (GGUF file, config, weights)."""
    out = {}
    for name in cases:
        path = write_case(d, name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == fixture["models"][name]["sha256"], \
            f"{writer} writes another file than the one recorded: rerun the recorder"
        f = read_gguf(path)
        cfg = config_from_metadata(f.metadata, str(path))
        out[name] = (f, cfg, load_weights(f, cfg))
    return out


def logprobs(cfg, w, tokens, n_ctx_seq: int = 0) -> np.ndarray:
    """log-softmax of the logits at every position of one sequence, one prefill; n_ctx_seq: llama.cpp's
    context per sequence, for longrope (0: 256, what the recorders' -c 256 gives)."""
    n = len(tokens)
    fw = Forward(cfg, w, KVCache(cfg, 64, 1), 64, n_ctx_seq=n_ctx_seq)
    lg = fw(Batch(np.asarray(tokens, np.int32), np.zeros(n, np.int32), np.arange(n, dtype=np.int32),
                  np.ones(n, bool))).logits.host().astype(np.float64)
    lg -= lg.max(axis=1, keepdims=True)
    return lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))


def compare(cfg, w, case: dict, bound: float, n_ctx_seq: int = 0) -> tuple[float, int]:
    """(max |logprob difference| over the recorded top-10s, number of greedy tokens that agree)."""
    return score(logprobs(cfg, w, case["prompt"] + case["tokens"][:-1], n_ctx_seq), case, bound)


def score(lp: np.ndarray, case: dict, bound: float) -> tuple[float, int]:
    """compare()'s result from lp, the log-softmax rows of the prompt and continuation (however computed)."""
    prompt, gen = case["prompt"], case["tokens"]
    worst, agree = 0.0, 0
    for j, step in enumerate(case["steps"]):
        row = lp[len(prompt) - 1 + j]
        worst = max(worst, float(np.abs(row[step["top_ids"]] - step["top_logprobs"]).max()))
        if agree == j:  # the recorder ignores EOS (id 1): llama.cpp picks the best other token
            pick = row.copy()
            pick[EOS] = -np.inf
            top2 = [lp for i, lp in zip(step["top_ids"], step["top_logprobs"]) if i != EOS][:2]
            if int(pick.argmax()) == gen[j] or top2[0] - top2[1] < 2 * bound:
                agree += 1
    return worst, agree
