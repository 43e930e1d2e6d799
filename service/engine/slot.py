"""A slot: one KV-cache sequence and the generation that owns it.

State machine (SlotState):

    IDLE --assign(task)--> PROMPT --last prompt chunk evaluated--> GENERATING --stop--> IDLE
      ^                      |                                                           |
      +------ cancel --------+-----------------------------------------------------------+

`cache_tokens` are the tokens whose keys/values sit in the slot's cache; they outlive the
task so that the next request with the same prefix skips that part (cache_prompt).
"""

from __future__ import annotations

import enum
import time

import numpy as np

from service.engine.stops import find_stop, held_back
from service.engine.task import Final, Partial, StopType, Task, Timings, TokenInfo
from service.sampling import Sampler


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
        self.task: Task | None = None
        self.cache_tokens: list[int] = []
        self.last_used = 0.0
        self.sampler: Sampler | None = None

    @property
    def busy(self) -> bool:
        return self.state is not SlotState.IDLE

    # -- lifecycle ------------------------------------------------------------------------

    def assign(self, task: Task, sampler: Sampler, tokenizer, n_keep: int) -> None:
        """Take a task whose first n_keep prompt tokens are already in this slot's cache."""
        p = task.params
        self.task, self.sampler, self.tokenizer = task, sampler, tokenizer
        self.state = SlotState.PROMPT
        self.cache_tokens = self.cache_tokens[:n_keep]
        self.i_prompt = n_keep  # next prompt token to evaluate
        self.n_cached = n_keep
        self.decoder = tokenizer.stream_decoder(special=False)
        self.text = ""
        self.sent = 0  # characters of text already streamed
        self.generated: list[TokenInfo] = []
        self.pending_tokens: list[TokenInfo] = []  # not yet streamed
        self.has_new_line = False
        self.t_prompt = time.perf_counter()
        self.t_gen = 0.0
        self.prompt_ms = 0.0
        self.stop_type = StopType.NONE
        self.stopping_word = ""
        self.truncated = False
        self.hidden_parts: list[np.ndarray] = []  # embedding tasks: (n_chunk, n_embd) per evaluated chunk
        sampler.accept_many(p.prompt)

    def release(self) -> None:
        self.state = SlotState.IDLE
        self.task = None
        self.sampler = None
        self.last_used = time.monotonic()

    # -- prompt ---------------------------------------------------------------------------

    def prompt_chunk(self, budget: int) -> list[int]:
        p = self.task.params.prompt
        return list(p[self.i_prompt : self.i_prompt + budget])

    def prompt_done(self, n: int) -> bool:
        """n more prompt tokens were evaluated; True when the prompt is complete."""
        self.cache_tokens.extend(self.task.params.prompt[self.i_prompt : self.i_prompt + n])
        self.i_prompt += n
        if self.i_prompt < len(self.task.params.prompt):
            return False
        self.state = SlotState.GENERATING
        self.t_gen = time.perf_counter()
        self.prompt_ms = (self.t_gen - self.t_prompt) * 1e3
        return True

    # -- generation -----------------------------------------------------------------------

    def timings(self) -> Timings:
        now = time.perf_counter()
        gen_ms = (now - self.t_gen) * 1e3 if self.t_gen else 0.0
        return Timings(self.n_cached, self.i_prompt - self.n_cached, self.prompt_ms, len(self.generated), gen_ms)

    def on_token(self, tok: int, logits: np.ndarray, n_predict_cap: int) -> None:
        """Record a sampled token and decide whether generation stops here."""
        p = self.task.params
        probs = None
        if p.n_probs > 0:
            probs = (self.sampler.last_probs if p.post_sampling_probs
                     else self.sampler.pre_sampling_probs(logits, tok, p.n_probs))
        info = TokenInfo(tok, probs)
        self.generated.append(info)
        self.pending_tokens.append(info)
        # with a grammar, end-of-generation is drawn only where the grammar is done, even under
        # ignore_eos: it ends the generation then too
        if self.tokenizer.is_eog(tok) and (not p.sampling.ignore_eos or self.sampler.constraint is not None):
            self.stop_type = StopType.EOS
            return
        self.cache_tokens.append(tok)  # its KV is written when it is fed back next step
        piece = self.decoder.feed(tok)
        if piece:
            old = len(self.text)
            self.text += piece
            self.has_new_line = self.has_new_line or "\n" in piece
            hit = find_stop(self.text, p.stop, old) if p.stop else None
            if hit is not None:
                self.text = self.text[: hit[0]]
                self.stop_type, self.stopping_word = StopType.WORD, hit[1]
                return
        n_limit = p.n_predict if p.n_predict >= 0 else -1
        if n_predict_cap > 0 and (n_limit < 0 or n_limit > n_predict_cap):
            n_limit = n_predict_cap
        if 0 <= n_limit <= len(self.generated):
            self.stop_type = StopType.LIMIT
        elif len(self.cache_tokens) >= self.n_ctx:
            self.stop_type, self.truncated = StopType.LIMIT, True
        elif (p.t_max_predict_ms > 0 and self.has_new_line
              and (time.perf_counter() - self.t_gen) * 1e3 > p.t_max_predict_ms):
            self.stop_type = StopType.LIMIT

    @property
    def stopped(self) -> bool:
        return self.stop_type is not StopType.NONE

    def partial(self) -> Partial | None:
        """The streamable step since the last one (None when there is nothing to send)."""
        end = len(self.text) - held_back(self.text, self.task.params.stop)
        if end <= self.sent and not self.pending_tokens:
            return None
        text = self.text[self.sent : max(end, self.sent)]
        self.sent = max(end, self.sent)
        toks, self.pending_tokens = tuple(self.pending_tokens), []
        t = self.timings() if self.task.params.timings_per_token else None
        return Partial(text, toks, t, self.id)

    def final(self) -> Final:
        if self.stop_type is not StopType.WORD:
            self.text += self.decoder.flush()
        unsent = self.text[self.sent :]
        return Final(
            content=self.text, tokens=tuple(self.generated), stop_type=self.stop_type,
            stopping_word=self.stopping_word, truncated=self.truncated,
            n_prompt=len(self.task.params.prompt), n_cached=self.n_cached,
            n_predicted=len(self.generated), timings=self.timings(), id_slot=self.id,
            seed=self.sampler.seed, unsent=unsent,
        )
