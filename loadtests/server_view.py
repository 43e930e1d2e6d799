"""The server's own view of a load test, from its Prometheus endpoint (GET /metrics).

A snapshot before and after the run gives the counters' deltas (tokens predicted, prompt
tokens, decode calls); a sampler polling during the run gives the gauges' peaks
(requests_deferred: requests queued for a slot; requests_processing: requests in slots),
which a before/after pair cannot see. The report puts them beside what locust counted.
A server started without --metrics answers 501: the view is then simply absent. So it is
without prometheus-client (its parser reads the text format), which a plain `pip install locust`
does not bring: the run goes on and says what to install (loadtests/requirements.txt has both).
"""

from __future__ import annotations

import logging
import time

import gevent
import requests

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # a plain locust environment: no server view
    text_string_to_metric_families = None

log = logging.getLogger("loadtests.server_view")

PREFIX = "llamacpp:"
GAUGES = ("requests_deferred", "requests_processing")


def scrape(base_url: str, headers: dict, timeout: float = 5.0) -> dict[str, float] | None:
    """{sample name without the prefix: value} of the `llamacpp:` metrics, None when unavailable."""
    if text_string_to_metric_families is None:
        log.warning("no server view: reading /metrics needs prometheus-client "
                    "(pip install prometheus-client, or pip install -r loadtests/requirements.txt)")
        return None
    try:
        r = requests.get(base_url.rstrip("/") + "/metrics", headers=headers, timeout=timeout)
    except requests.RequestException as e:
        log.warning("/metrics unreachable: %s", e)
        return None
    if r.status_code != 200:
        log.warning("/metrics answered %s: no server view (start the server with --metrics)", r.status_code)
        return None
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if s.name.startswith(PREFIX):
                out[s.name[len(PREFIX):]] = s.value
    return out


class Sampler:
    """Polls /metrics every `interval` seconds in a greenlet, keeping the gauges' peaks."""

    def __init__(self, base_url: str, headers: dict, interval: float = 0.25):
        self.base_url, self.headers, self.interval = base_url, headers, interval
        self.peaks = {g: 0.0 for g in GAUGES}
        self.samples = 0
        self._glet: gevent.Greenlet | None = None

    def start(self) -> Sampler:
        self._glet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        while True:
            snap = scrape(self.base_url, self.headers, timeout=max(1.0, 4 * self.interval))
            if snap is not None:
                self.samples += 1
                for g in GAUGES:
                    self.peaks[g] = max(self.peaks[g], snap.get(g, 0.0))
            gevent.sleep(self.interval)

    def stop(self) -> None:
        if self._glet is not None:
            self._glet.kill(block=True)
            self._glet = None


class ServerView:
    """Before/after snapshots and the sampler of one run."""

    def __init__(self, base_url: str, headers: dict, interval: float):
        self.base_url, self.headers = base_url, headers
        self.before = scrape(base_url, headers)
        self.after: dict[str, float] | None = None
        self.t0 = self.t1 = None
        self.sampler = Sampler(base_url, headers, interval) if self.before is not None else None

    def start(self) -> None:
        """The run begins: its clock and the sampler start."""
        self.t0 = time.monotonic()
        if self.sampler is not None:
            self.sampler.start()

    def finish(self) -> None:
        if self.t1 is not None or self.t0 is None:
            return
        self.t1 = time.monotonic()
        if self.sampler is not None:
            self.sampler.stop()
            self.after = scrape(self.base_url, self.headers)

    def delta(self, name: str) -> float | None:
        if self.before is None or self.after is None or name not in self.after:
            return None
        return self.after[name] - self.before.get(name, 0.0)

    def rows(self, locust_tokens: int, locust_requests: int) -> list[tuple[str, str, str]]:
        """(quantity, locust's figure, the server's figure) for the side-by-side report."""
        secs = (self.t1 or time.monotonic()) - (self.t0 or time.monotonic())

        def fmt(v):
            return "-" if v is None else (f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}")

        tokens = self.delta("tokens_predicted_total")
        busy = self.delta("tokens_predicted_seconds_total")
        peaks = self.sampler.peaks if self.sampler is not None else {}
        return [
            ("requests completed", fmt(locust_requests), "-"),
            ("tokens predicted", fmt(locust_tokens), fmt(tokens)),
            ("prompt tokens", "-", fmt(self.delta("prompt_tokens_total"))),
            ("decode calls", "-", fmt(self.delta("n_decode_total"))),
            ("generated tokens/s (run wall time)", fmt(locust_tokens / secs if secs > 0 else None),
             fmt(tokens / secs if tokens is not None and secs > 0 else None)),
            ("generation tokens/s per stream (server timings)", "-",
             fmt(tokens / busy if tokens and busy else None)),
            ("peak requests_processing", "-", fmt(peaks.get("requests_processing"))),
            ("peak requests_deferred", "-", fmt(peaks.get("requests_deferred"))),
            ("/metrics samples during the run", "-", fmt(self.sampler.samples if self.sampler else None)),
        ]


def render(rows: list[tuple[str, str, str]]) -> str:
    w = max(len(r[0]) for r in rows)
    head = f"{'':<{w}}  {'locust':>10}  {'server':>10}"
    return "\n".join([head] + [f"{q:<{w}}  {a:>10}  {b:>10}" for q, a, b in rows])
