"""A slot: one KV-cache sequence, what it holds, and where its current task stands.

State machine (SlotState):

    IDLE --assign(gen)--> PROMPT --last prompt chunk evaluated--> GENERATING --stop--> IDLE
      ^                     |                                                          |
      +------ cancel -------+----------------------------------------------------------+

`cache_tokens` are the tokens whose keys/values sit in the slot's cache; they outlive the
task so that the next request with the same prefix skips that part (cache_prompt). The task's
own state (sampler, text, stops, timings) is its Generation (generation.py), held in `gen`
while the slot is busy. What /slots shows of the last task after it left (its id and
parameters, as llama-server keeps its previous task) stays in `last_task`.
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


def common_prefix(a: list[int], b: tuple[int, ...] | list[int]) -> int:
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
        self.lora: tuple[float, ...] = ()  # the LoRA scales cache_tokens were evaluated with
        self.last_used = -1.0  # time.monotonic() of the last release (-1: never used)
        self.i_prompt = 0  # next prompt token to evaluate
        self.draft: list[int] = []  # the n-gram draft fed after the last sampled token in this step's batch
        self.gen: Generation | None = None
        self.whole = False  # prompts go into one batch whole (an encoder's tokens attend to later ones)
        self.last_task: Task | None = None  # the task that held the slot last (None: never used)

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
        self.last_task = gen.task
        self.state = SlotState.PROMPT
        self.cache_tokens = self.cache_tokens[: gen.n_cached]
        self.i_prompt = gen.n_cached

    def release(self) -> None:
        self.state = SlotState.IDLE
        self.gen = None
        self.last_used = time.monotonic()

    # -- prompt ---------------------------------------------------------------------------

    def prompt_chunk(self, budget: int) -> list[int]:
        """The next prompt tokens, at most `budget`; an image's rows are never split between two batches
        (they attend to each other): the chunk ends before an image that does not fit, or is empty."""
        p = self.gen.params.prompt
        end = min(self.i_prompt + budget, len(p))
        for im in self.gen.params.images:
            a, b = im.pos, im.pos + len(im.embd)
            if a < end < b:
                end = a if a > self.i_prompt else self.i_prompt
        if self.whole and end < len(p):  # next batch, where it fits whole (the engine refuses a longer one)
            end = self.i_prompt
        return list(p[self.i_prompt : end])

    def prompt_done(self, n: int) -> bool:
        """n more prompt tokens were evaluated; True when the prompt is complete."""
        prompt = self.gen.params.prompt
        self.cache_tokens.extend(prompt[self.i_prompt : self.i_prompt + n])
        self.i_prompt += n
        self.gen.prompt_evaluated(n)
        if self.i_prompt < len(prompt):
            return False
        self.state = SlotState.GENERATING
        return True

    # -- generation -----------------------------------------------------------------------

    def on_token(self, tok: int, logits: np.ndarray | None, ctx_shift: bool, forced: bool = False) -> None:
        """A sampled token: the generation records it; unless it ends the output, it joins the
        cache's tokens (its KV is written when it is fed back next step). Without context shift
        a slot that would have no room left stops, truncated (llama-server's rule)."""
        full = not ctx_shift and len(self.cache_tokens) + 1 >= self.n_ctx
        if self.gen.on_token(tok, logits, fills_context=full, forced=forced):
            self.cache_tokens.append(tok)

    def shift_span(self, add_bos: bool) -> tuple[int, int]:
        """(n_keep, n_discard) of a context shift, by llama-server's rule: keep the request's
        n_keep prompt tokens (-1: the whole prompt; plus BOS when the model adds one, at most
        n_ctx - 4), drop n_discard after them (0: half of the rest), leave at least one."""
        p = self.gen.params
        n_kv = len(self.cache_tokens) - 1
        n_keep = len(p.prompt) if p.n_keep < 0 else p.n_keep
        n_keep = max(0, min(self.n_ctx - 4, n_keep + int(add_bos)))
        n_left = n_kv - n_keep
        n_discard = p.n_discard if p.n_discard else n_left // 2
        return n_keep, min(max(n_discard, 0), max(0, n_left - 1))

    def shifted(self, n_keep: int, n_discard: int) -> None:
        """The cache dropped n_discard tokens after the first n_keep: so do the tokens."""
        self.cache_tokens = self.cache_tokens[:n_keep] + self.cache_tokens[n_keep + n_discard :]
        self.gen.truncated = True

    @property
    def needs_shift(self) -> bool:
        """Generating with no room for the pending token's successor: the context must shift
        before the next step (the pending token, last in cache_tokens, is not in the KV yet)."""
        return self.state is SlotState.GENERATING and len(self.cache_tokens) >= self.n_ctx
