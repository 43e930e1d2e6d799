"""Counters behind llama-server's `llamacpp:` metrics, updated by the engine thread.

Totals only grow. The two throughput gauges (prompt_tokens_seconds and
predicted_tokens_seconds) are, as in llama-server, averages over the requests finished
since the previous /metrics read: `take_bucket()` returns and resets them.
"""

from __future__ import annotations

import threading

from service.engine.task import Final


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.prompt_tokens_total = 0
        self.prompt_seconds_total = 0.0
        self.tokens_predicted_total = 0
        self.tokens_predicted_seconds_total = 0.0
        self.n_decode_total = 0
        self.n_busy_slots_total = 0
        self.n_tokens_max = 0
        self._bucket = [0, 0.0, 0, 0.0]  # prompt tokens, prompt s, predicted tokens, predicted s

    def decoded(self, n_busy: int, n_tokens_in_slot: int) -> None:
        """One forward pass ran with n_busy slots; the longest slot holds n_tokens_in_slot."""
        with self._lock:
            self.n_decode_total += 1
            self.n_busy_slots_total += n_busy
            self.n_tokens_max = max(self.n_tokens_max, n_tokens_in_slot)

    def finished(self, f: Final) -> None:
        t = f.timings
        with self._lock:
            self.prompt_tokens_total += t.prompt_n
            self.prompt_seconds_total += t.prompt_ms / 1e3
            self.tokens_predicted_total += t.predicted_n
            self.tokens_predicted_seconds_total += t.predicted_ms / 1e3
            b = self._bucket
            b[0] += t.prompt_n
            b[1] += t.prompt_ms / 1e3
            b[2] += t.predicted_n
            b[3] += t.predicted_ms / 1e3

    def take_bucket(self) -> tuple[float, float]:
        """(prompt tokens/s, predicted tokens/s) since the last call; 0 when nothing ran."""
        with self._lock:
            pt, ps, gt, gs = self._bucket
            self._bucket = [0, 0.0, 0, 0.0]
        return (pt / ps if ps > 0 else 0.0, gt / gs if gs > 0 else 0.0)

    @property
    def busy_slots_per_decode(self) -> float:
        return self.n_busy_slots_total / self.n_decode_total if self.n_decode_total else 0.0
