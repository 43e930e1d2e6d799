"""A slot: one KV-cache sequence, what it holds, and where its current task stands.

State machine (SlotState):

    IDLE --assign(gen)--> PROMPT --last prompt chunk evaluated--> GENERATING --stop--> IDLE
      ^                     |                                                          |
      +------ cancel -------+----------------------------------------------------------+

`cache_tokens` are the tokens whose keys/values sit in the slot's cache; they outlive the
task so that the next request with the same prefix skips that part (cache_prompt). The task's
own state (sampler, text, stops, timings) is its Generation (generation.py), held in `gen`
while the slot is busy.
"""

from __future__ import annotations

import enum
import time

import numpy as np

from service.engine.generation import Generation
from service.engine.task import Task


class SlotState(enum.Enum):
    IDLE = "idle"  # no task; cache_tokens kept for prefix reuse
    PROMPT = "prompt"  # evaluating the prompt in chunks
    GENERATING = "generating"  # one token per engine step


def common_prefix(a: list[int], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n], np.int64) != np.asarray(b[:n], np.int64)
    hit = np.flatnonzero(x)
    return int(hit[0]) if hit.size else n


class Slot:
    def __init__(self, sid: int, n_ctx: int):
        self.id = sid
        self.n_ctx = n_ctx
        self.state = SlotState.IDLE
        self.cache_tokens: list[int] = []
        self.last_used = 0.0  # time.monotonic() of the last release (least recently used goes first)
        self.i_prompt = 0  # next prompt token to evaluate
        self.gen: Generation | None = None

    @property
    def busy(self) -> bool:
        return self.state is not SlotState.IDLE

    @property
    def task(self) -> Task | None:
        return self.gen.task if self.gen is not None else None

    # -- lifecycle ------------------------------------------------------------------------

    def assign(self, gen: Generation) -> None:
        """Take a task whose first gen.n_cached prompt tokens are already in this slot's cache."""
        self.gen = gen
        self.state = SlotState.PROMPT
        self.cache_tokens = self.cache_tokens[: gen.n_cached]
        self.i_prompt = gen.n_cached

    def release(self) -> None:
        self.state = SlotState.IDLE
        self.gen = None
        self.last_used = time.monotonic()

    # -- prompt ---------------------------------------------------------------------------

    def prompt_chunk(self, budget: int) -> list[int]:
        p = self.gen.params.prompt
        return list(p[self.i_prompt : self.i_prompt + budget])

    def prompt_done(self, n: int) -> bool:
        """n more prompt tokens were evaluated; True when the prompt is complete."""
        prompt = self.gen.params.prompt
        self.cache_tokens.extend(prompt[self.i_prompt : self.i_prompt + n])
        self.i_prompt += n
        if self.i_prompt < len(prompt):
            return False
        self.state = SlotState.GENERATING
        self.gen.prompt_done(self.i_prompt - self.gen.n_cached)
        return True

    # -- generation -----------------------------------------------------------------------

    def on_token(self, tok: int, logits: np.ndarray | None, n_predict_cap: int) -> None:
        """A sampled token: the generation records it; unless it ends the output, it joins the
        cache's tokens (its KV is written when it is fed back next step)."""
        if self.gen.on_token(tok, logits, n_predict_cap, fills_context=len(self.cache_tokens) + 1 >= self.n_ctx):
            self.cache_tokens.append(tok)
