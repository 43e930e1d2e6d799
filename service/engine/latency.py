"""Latency histograms behind the `llamajit:` metrics that fleet routers and autoscalers read
(service.api.metrics_fleet renders them): time to first token, time per output token, end-to-end
latency and queue time, each observed once per task when it leaves its slot.

A task's clock starts when the HTTP side hands it to the engine (Task.t_created), so queue time
includes the wait for a free slot and for the loop to look at the inbox:
- queue: from then until the task took a slot;
- time to first token: until its first token was sampled (tasks that generated one);
- time per output token: (last token - first token) / (n - 1), over tasks with n >= 2 tokens,
  so one observation per request, not per token (the mean decode interval the client saw);
- end to end: until it left its slot, however it ended (done, stopped, cancelled).
A task cancelled before it got a slot, or refused by --max-queue, is not observed here; refusals
are counted apart (Metrics.rejected).

Buckets are upper bounds in seconds; observations are kept per bucket (not cumulative), plus the
sum and count, so a frozen copy (a sleeping server) is a plain deepcopy.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Wide enough for a 2-core CPU (a long prompt's first token takes seconds) and fine enough for a
# GPU (a decode step of a few ms).
TTFT_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TPOT_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
E2E_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
QUEUE_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class Histogram:
    bounds: tuple[float, ...]  # upper bounds, ascending; +Inf is implied
    counts: list[int] = field(default_factory=list)  # len(bounds) + 1: per bucket, the last one is +Inf
    total: float = 0.0  # sum of the observations

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, x: float) -> None:
        # Prometheus buckets are `le`: an observation equal to a bound belongs to that bucket
        self.counts[bisect.bisect_left(self.bounds, x)] += 1
        self.total += x

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it), the last bound being +Inf: Prometheus' buckets."""
        out, run = [], 0
        for le, n in zip((*self.bounds, float("inf")), self.counts):
            run += n
            out.append((le, run))
        return out


@dataclass
class Latency:
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_S))
    tpot: Histogram = field(default_factory=lambda: Histogram(TPOT_S))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_S))
    queue: Histogram = field(default_factory=lambda: Histogram(QUEUE_S))

    def observe(self, queue_s: float, ttft_s: float | None, tpot_s: float | None, e2e_s: float) -> None:
        self.queue.observe(queue_s)
        self.e2e.observe(e2e_s)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        if tpot_s is not None:
            self.tpot.observe(tpot_s)
