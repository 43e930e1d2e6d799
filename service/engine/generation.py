"""One task's generation while it holds a slot: its sampler, the text decoded so far, stop strings,
token probabilities and timings. Made when the task takes a slot, dropped when it leaves; the slot
(slot.py) keeps only what outlives the task: the KV cache's tokens and the scheduling state.

Timings follow llama-server's: the prompt time runs from the task's start to the end of the last
forward pass that held its prompt tokens; the generation time from there to the last token. The
first token comes from the last prompt pass, so the generation rate counts n - 1 steps.
"""

from __future__ import annotations

import time

import numpy as np

from service.engine.budget import BudgetTracker
from service.engine.speculative import DraftStats
from service.engine.stops import find_stop, held_back
from service.engine.task import Final, Partial, Progress, StopType, Task, Timings, TokenInfo
from service.sampling import Sampler


class Generation:
    def __init__(self, task: Task, sampler: Sampler, tokenizer, id_slot: int, n_cached: int, n_predict_default: int = -1,
                 lora: tuple[float, ...] = ()):
        self.task = task
        self.lora = lora  # the LoRA adapter scales its tokens are evaluated with
        self.params = task.params
        self.sampler = sampler
        self.tokenizer = tokenizer
        self.id_slot = id_slot
        self.n_cached = n_cached  # prompt tokens found in the slot's cache
        self.n_evaluated = 0  # prompt tokens evaluated so far
        p = self.params
        # the effective limit (llama-server's n_predict_max): the request's n_predict, else -n;
        # -1 = none. A request may go past -n, as in llama-server since it stopped capping.
        self.n_limit = p.n_predict if p.n_predict != -1 else n_predict_default
        self.decoder = tokenizer.stream_decoder(special=False)
        self.text = ""
        self.sent = 0  # characters of text already streamed
        self.generated: list[TokenInfo] = []
        self.pending_tokens: list[TokenInfo] = []  # not yet streamed
        self.has_new_line = False
        self.t_start = time.perf_counter()
        self.t_prompt_last = 0.0  # end of the last forward pass that held prompt tokens (0: none yet)
        self.t_gen_last = 0.0  # when the last token was sampled
        self.t_gen_first = 0.0  # when the first one was (0: none yet)
        self.stop_type = StopType.NONE
        self.stopping_word = ""
        self.truncated = False
        self.hidden_parts: list[np.ndarray] = []  # embedding tasks: (n_chunk, n_embd) per evaluated chunk
        self.budget = BudgetTracker(p.thinking_budget) if p.thinking_budget is not None else None
        self.drafts = DraftStats()  # speculative decoding's counters (speculative.py)
        sampler.accept_many(t for t in p.prompt if t >= 0)  # image rows are not tokens

    def prompt_evaluated(self, n: int) -> None:
        """A forward pass evaluated n more of the prompt's tokens."""
        self.n_evaluated += n
        self.t_prompt_last = time.perf_counter()

    @property
    def n_remain(self) -> int:
        """Tokens left under the limit; -1 when there is none (llama-server's n_remaining)."""
        return -1 if self.n_limit < 0 else self.n_limit - len(self.generated)

    def timings(self) -> Timings:
        prompt_ms = (self.t_prompt_last - self.t_start) * 1e3 if self.t_prompt_last else 0.0
        gen_ms = 0.0
        if self.generated:  # at least 1 us: the first token can land in the pass that ended the prompt
            gen_ms = max(1e-3, (self.t_gen_last - self.t_prompt_last) * 1e3)
        d = self.drafts
        return Timings(self.n_cached, self.n_evaluated, prompt_ms, len(self.generated), gen_ms, d.n_drafted,
                       d.n_accepted)

    def latencies(self, now: float) -> tuple[float, float | None, float | None, float]:
        """(queue, time to first token, time per output token, end to end) in seconds, leaving
        the slot at `now` (service.engine.latency says what each one is)."""
        t0, n = self.task.t_created, len(self.generated)
        ttft = self.t_gen_first - t0 if n else None
        tpot = (self.t_gen_last - self.t_gen_first) / (n - 1) if n > 1 else None
        return self.t_start - t0, ttft, tpot, now - t0

    def progress(self, n_done: int) -> Partial:
        """A prompt-progress event (return_progress): n_done of the prompt's tokens are in the cache."""
        t = self.timings() if self.params.timings_per_token else None
        ms = int((time.perf_counter() - self.t_start) * 1e3)
        return Partial("", (), t, self.id_slot, Progress(len(self.params.prompt), self.n_cached, n_done, ms))

    def on_token(self, tok: int, logits: np.ndarray | None, fills_context: bool, forced: bool = False) -> bool:
        """Record a sampled token and decide whether generation stops here. fills_context: the
        slot has no room after this token (and the context does not shift); forced: the thinking
        budget chose it, no sampler did (no probabilities then). Returns whether the token goes
        on (its KV is written when it is fed back next step); an end-of-generation token does not."""
        p = self.params
        self.t_gen_last = time.perf_counter()
        if not self.generated:
            self.t_gen_first = self.t_gen_last
        probs = None
        if p.n_probs > 0 and not forced:
            probs = (self.sampler.last_probs if p.post_sampling_probs
                     else self.sampler.pre_sampling_probs(logits, tok, p.n_probs))
        info = TokenInfo(tok, probs)
        self.generated.append(info)
        self.pending_tokens.append(info)
        # with a grammar, end-of-generation is drawn only where the grammar is done, even under
        # ignore_eos: it ends the generation then too
        if self.tokenizer.is_eog(tok) and (not p.sampling.ignore_eos or self.sampler.constraint is not None):
            self.stop_type = StopType.EOS
            return False
        piece = self.decoder.feed(tok)
        if self.budget is not None:
            self.budget.seen(self.text + piece)  # every token counts, a piece or not
        if piece:
            old = len(self.text)
            self.text += piece
            self.has_new_line = self.has_new_line or "\n" in piece
            hit = find_stop(self.text, p.stop, old) if p.stop else None
            if hit is not None:
                self.text = self.text[: hit[0]]
                self.stop_type, self.stopping_word = StopType.WORD, hit[1]
                return True
        if fills_context:
            self.stop_type, self.truncated = StopType.LIMIT, True
        elif self.n_remain == 0:
            self.stop_type = StopType.LIMIT
        elif (p.t_max_predict_ms > 0 and self.has_new_line
              and (time.perf_counter() - self.t_prompt_last) * 1e3 > p.t_max_predict_ms):
            self.stop_type = StopType.LIMIT
        return True

    @property
    def stopped(self) -> bool:
        return self.stop_type is not StopType.NONE

    def partial(self) -> Partial | None:
        """The streamable step since the last one (None when there is nothing to send)."""
        end = len(self.text) - held_back(self.text, self.params.stop)
        if end <= self.sent and not self.pending_tokens:
            return None
        text = self.text[self.sent : max(end, self.sent)]
        self.sent = max(end, self.sent)
        toks, self.pending_tokens = tuple(self.pending_tokens), []
        t = self.timings() if self.params.timings_per_token else None
        return Partial(text, toks, t, self.id_slot)

    def final(self) -> Final:
        if self.stop_type is not StopType.WORD:
            self.text += self.decoder.flush()
        return Final(
            content=self.text, tokens=tuple(self.generated), stop_type=self.stop_type,
            stopping_word=self.stopping_word, truncated=self.truncated,
            n_prompt=len(self.params.prompt), n_cached=self.n_cached,
            n_predicted=len(self.generated), timings=self.timings(), id_slot=self.id_slot,
            seed=self.sampler.seed, unsent=self.text[self.sent :],
        )
