"""The latency histograms' buckets: Prometheus' `le` (an observation equal to a bound counts in
that bucket), cumulative counts ending at +Inf, the sum, and which observations each request adds."""

from __future__ import annotations

from service.engine.latency import Histogram, Latency


def test_buckets_are_upper_bounds_inclusive_and_cumulative():
    h = Histogram((0.1, 1.0))
    for x in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(x)
    assert h.counts == [2, 2, 1]  # (.., 0.1], (0.1, 1.0], (1.0, +Inf)
    assert h.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert h.count == 5 and abs(h.total - 8.65) < 1e-12


def test_a_request_without_tokens_adds_no_first_token_and_one_token_no_interval():
    lat = Latency()
    lat.observe(0.01, None, None, 0.2)  # an embedding: queue and end to end only
    lat.observe(0.01, 0.05, None, 0.3)  # one generated token: no interval between tokens
    lat.observe(0.02, 0.05, 0.01, 0.4)
    assert (lat.queue.count, lat.e2e.count, lat.ttft.count, lat.tpot.count) == (3, 3, 2, 1)
    assert abs(lat.e2e.total - 0.9) < 1e-12
