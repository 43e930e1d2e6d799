"""Generation over several sequences decoded together: the API the server drives.

Prompts are evaluated one by one (each in chunks of the batch size), then every active
sequence contributes one token to each decode batch, so one forward pass serves all.
Each sequence picks its tokens with its own Sampler (service.sampling), or by argmax.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from service.model.forward import Batch
from service.model.model import Model
from service.sampling import Sampler


class Stop(enum.Enum):
    """Why a sequence ended (llama-server's stop types)."""

    EOS = "eos"  # an end-of-generation token was produced
    LIMIT = "limit"  # n_predict tokens were produced
    CONTEXT = "context"  # the context window is full


@dataclass(frozen=True)
class Step:
    index: int  # which prompt
    token: int
    stop: Stop | None  # set on the sequence's last step


def greedy(model: Model, prompts: list[list[int]], n_predict: int = -1) -> Iterator[list[Step]]:
    """generate() choosing every token by argmax."""
    return generate(model, prompts, n_predict)


def generate(model: Model, prompts: list[list[int]], n_predict: int = -1,
             samplers: list[Sampler] | None = None) -> Iterator[list[Step]]:
    """Yield, per decode step, one Step for each sequence still running.

    samplers[i] chooses prompt i's tokens (it is fed the prompt first, for penalties and
    DRY); None: argmax. A sampler's draws depend only on its own seed and history, so a
    sequence gets the same tokens whatever else is decoded beside it."""
    if samplers is not None and len(samplers) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(samplers)} samplers")
    if len(prompts) > model.n_seq:
        raise ValueError(f"{len(prompts)} prompts but the cache holds {model.n_seq} sequences")
    if any(not p for p in prompts):
        raise ValueError("empty prompt")
    logits = np.zeros((len(prompts), model.cfg.n_vocab), np.float32)
    for i, p in enumerate(prompts):
        model.cache.clear(i)
        logits[i] = model.eval(i, p)
        if samplers is not None:
            samplers[i].accept_many(p)
    active = list(range(len(prompts)))
    produced = [0] * len(prompts)
    while active:
        steps, nxt = [], []
        for row, i in enumerate(active):
            if samplers is None:
                tok = int(np.argmax(logits[row]))
            else:
                tok = samplers[i].sample(logits[row])
                samplers[i].accept(tok)
            produced[i] += 1
            stop = None
            if model.tokenizer.is_eog(tok):
                stop = Stop.EOS
            elif 0 <= n_predict <= produced[i]:
                stop = Stop.LIMIT
            elif model.cache.length[i] + 1 >= model.n_ctx:
                stop = Stop.CONTEXT
            steps.append(Step(i, tok, stop))
            if stop is None:
                nxt.append((i, tok))
        yield steps
        if not nxt:
            return
        active = [i for i, _ in nxt]
        ids = np.array([t for _, t in nxt], np.int32)
        seqs = np.array(active, np.int32)
        pos = np.array([model.cache.length[i] for i in active], np.int32)
        out = model.forward(Batch(ids, seqs, pos, np.ones(len(ids), bool)))
        logits = out.logits.host()  # (len(active), n_vocab): one copy when they sit on the GPU


def run_all(model: Model, prompts: list[list[int]], n_predict: int = -1,
            samplers: list[Sampler] | None = None) -> tuple[dict[int, list[int]], dict[int, Stop]]:
    """generate() to the end: the tokens of each prompt and why each stopped, by prompt index."""
    out = {i: [] for i in range(len(prompts))}
    stops = {}
    for steps in generate(model, prompts, n_predict, samplers):
        for s in steps:
            out[s.index].append(s.token)
            if s.stop:
                stops[s.index] = s.stop
    return out, stops
