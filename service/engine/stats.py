"""Counters behind llama-server's `llamacpp:` metrics, written by the engine thread.

As in llama-server:
- prompt tokens are counted when a forward pass evaluates them (embedding prompts included),
  timed over the passes that held them; tokens reused from a cache are counted apart;
- a generation is counted when its slot is released: n tokens, n - 1 decode steps (the first
  token comes from the last prompt pass's logits, so it costs no step of its own) and the time
  from the end of the prompt to the last token;
- the two throughput gauges are steps per second over a bucket that every /metrics scrape
  reads and empties;
- speculative decoding's drafted and accepted tokens, verification steps and accepted tokens
  per draft position are added when the slot is released, with its generation.

While the server sleeps (service.engine.power) scrapes read a copy frozen on entering sleep:
each one empties that copy's bucket, and a wake then empties the live bucket too, so that the
same tokens are never reported twice.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field

from service.engine.latency import Latency


@dataclass
class Bucket:
    count: int = 0  # tokens
    steps: int = 0  # decode steps (generation: tokens - 1 per request)
    seconds: float = 0.0

    def add(self, n: int, steps: int, seconds: float) -> None:
        self.count += n
        self.steps += steps
        self.seconds += seconds

    def per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Metrics:
    """One reading of every counter (what /metrics renders)."""

    prompt: Bucket = field(default_factory=Bucket)  # evaluated prompt tokens, cached ones excluded
    predict: Bucket = field(default_factory=Bucket)
    prompt_bucket: Bucket = field(default_factory=Bucket)  # since the last scrape
    predict_bucket: Bucket = field(default_factory=Bucket)
    n_prompt_cached: int = 0
    n_tokens_max: int = 0
    n_decode: int = 0
    n_busy_slots: int = 0
    latency: Latency = field(default_factory=Latency)  # the llamajit: histograms (latency.py)
    rejected: int = 0  # requests refused because the queue was full (--max-queue)
    n_draft_tokens: int = 0  # speculative decoding: tokens drafted
    n_draft_accepted: int = 0  # ... accepted
    n_draft_steps: int = 0  # ... verification steps
    accepted_per_pos: list[int] = field(default_factory=list)  # accepted tokens per draft position

    @property
    def busy_slots_per_decode(self) -> float:
        return self.n_busy_slots / max(self.n_decode, 1)


class Stats:
    def __init__(self, t_start: float | None = None):
        self._lock = threading.Lock()
        self.t_start = int(t_start if t_start is not None else time.time())  # Unix seconds (Process-Start-Time-Unix)
        self._m = Metrics()
        self._frozen: Metrics | None = None  # the copy served while asleep
        self._scraped_asleep = False

    # -- the engine thread ------------------------------------------------------------------

    def decoded(self, n_busy: int, n_tokens_max: int, n_prompt: int, seconds: float) -> None:
        """One forward pass: n_busy slots were busy, the longest slot holds n_tokens_max tokens,
        n_prompt of the batch's tokens were prompt tokens and the pass took `seconds`."""
        with self._lock:
            m = self._m
            m.n_decode += 1
            m.n_busy_slots += n_busy
            m.n_tokens_max = max(m.n_tokens_max, n_tokens_max)
            if n_prompt:
                m.prompt.add(n_prompt, n_prompt, seconds)
                m.prompt_bucket.add(n_prompt, n_prompt, seconds)

    def cached(self, n: int) -> None:
        """A task starts with n prompt tokens already in its slot's cache."""
        with self._lock:
            self._m.n_prompt_cached += n

    def generated(self, n: int, seconds: float) -> None:
        """A slot that generated n > 0 tokens was released; seconds from the prompt's end to its last token."""
        with self._lock:
            self._m.predict.add(n, n - 1, seconds)
            self._m.predict_bucket.add(n, n - 1, seconds)

    def drafted(self, d) -> None:
        """A released slot's speculative counters (speculative.DraftStats)."""
        if not d.n_steps and not d.n_drafted:
            return
        with self._lock:
            m = self._m
            m.n_draft_tokens += d.n_drafted
            m.n_draft_accepted += d.n_accepted
            m.n_draft_steps += d.n_steps
            if len(m.accepted_per_pos) < len(d.per_pos):
                m.accepted_per_pos += [0] * (len(d.per_pos) - len(m.accepted_per_pos))
            for i, n in enumerate(d.per_pos):
                m.accepted_per_pos[i] += n

    def finished(self, queue_s: float, ttft_s: float | None, tpot_s: float | None, e2e_s: float) -> None:
        """A task left its slot: its latencies (service.engine.latency says what each one is)."""
        with self._lock:
            self._m.latency.observe(queue_s, ttft_s, tpot_s, e2e_s)

    def refused(self) -> None:
        """A request was refused: the slots and the queue were full (any thread)."""
        with self._lock:
            self._m.rejected += 1

    def freeze(self) -> None:
        """Entering sleep: later scrapes read this copy."""
        with self._lock:
            self._frozen = copy.deepcopy(self._m)
            self._scraped_asleep = False

    def thaw(self) -> None:
        """Woken: a bucket already reported from the frozen copy is not reported again."""
        with self._lock:
            if self._scraped_asleep:
                self._m.prompt_bucket, self._m.predict_bucket = Bucket(), Bucket()
            self._frozen = None

    # -- the HTTP side ----------------------------------------------------------------------

    def scrape(self) -> Metrics:
        """A copy for one /metrics answer; the bucket it read starts over."""
        with self._lock:
            src = self._frozen if self._frozen is not None else self._m
            out = copy.deepcopy(src)
            src.prompt_bucket, src.predict_bucket = Bucket(), Bucket()
            self._scraped_asleep = self._scraped_asleep or self._frozen is not None
        return out

    def peek(self) -> Metrics:
        """A copy that leaves the buckets alone (tests, logs)."""
        with self._lock:
            return copy.deepcopy(self._m)
