"""The kubelet's prober, for one probe of one container (pkg/kubelet/prober/worker.go, re-told).

A worker thread ticks every periodSeconds from the moment the container starts (the first tick
at once) and, on each tick:
- startup probe: stops probing once the container has started;
- liveness and readiness probes: do nothing until the startup probe has succeeded (the
  container has "started"); so a pod still loading its model is neither probed for liveness
  nor ready;
- all: do nothing before initialDelaySeconds; otherwise GET the path with timeoutSeconds, a
  2xx/3xx answer is a success, anything else (4xx/5xx, refused, timed out) a failure;
- the result only becomes the probe's state after successThreshold successes (failureThreshold
  failures) in a row; a liveness or startup probe whose state turns to failure kills the
  container (the kubelet would restart it) and the worker goes on hold.
When the pod is being deleted, liveness and startup probes stop (their state set to success,
so a draining pod is never killed for failing them); readiness goes on probing.
Initial states: readiness failure, liveness success, startup unknown.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx


class Result(enum.Enum):
    UNKNOWN = "unknown"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass
class Attempt:
    """One probe actually sent: when it was sent (seconds since the container started), what came back."""
    t: float
    result: Result
    detail: str  # the status code, or the transport error's name


@dataclass
class ProbeWorker:
    kind: str  # "startup" | "readiness" | "liveness"
    spec: dict  # the container's <kind>Probe, as rendered
    url: str  # http://<pod address>:<port><path>, the named port already resolved
    started_at: float  # monotonic time the container started
    on_change: Callable[["ProbeWorker", Result], None]
    state: Result = Result.UNKNOWN
    attempts: list[Attempt] = field(default_factory=list)
    changes: list[tuple[float, Result]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = {"readiness": Result.FAILURE, "liveness": Result.SUCCESS}.get(self.kind, Result.UNKNOWN)
        self.period = self.spec.get("periodSeconds", 10)
        self.timeout = self.spec.get("timeoutSeconds", 1)
        self.initial_delay = self.spec.get("initialDelaySeconds", 0)
        self.success_threshold = self.spec.get("successThreshold", 1)
        self.failure_threshold = self.spec.get("failureThreshold", 3)
        self.container_started = False  # set by the kubelet when the startup probe succeeds
        self.deleting = False  # set by the kubelet when the pod's deletion begins
        self._last: Result | None = None
        self._run = 0  # how many times in a row _last came back
        self._on_hold = False
        self._stop = threading.Event()
        self._trigger = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"probe-{self.kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._trigger.set()
        self._thread.join(self.timeout + 2)

    def trigger(self) -> None:
        """An immediate run, as the kubelet asks of readiness when a container has just started."""
        self._trigger.set()

    def _loop(self) -> None:
        while not self._stop.is_set() and self._probe_once():
            # a fixed-rate ticker (time.Ticker) from the container's start: a slow probe or a
            # triggered one does not shift the later ticks
            elapsed = time.monotonic() - self.started_at
            if self._trigger.wait((elapsed // self.period + 1) * self.period - elapsed):
                self._trigger.clear()

    def _probe_once(self) -> bool:
        """One tick; False ends the worker."""
        if self.deleting and self.kind in ("liveness", "startup"):
            self._set(Result.SUCCESS)
            return False
        if self._on_hold:
            return True
        since_start = time.monotonic() - self.started_at
        if since_start < self.initial_delay:
            return True
        # the startup probe runs until the container has started, liveness and readiness after
        if self.container_started != (self.kind != "startup"):
            return True
        sent = time.monotonic() - self.started_at
        result, detail = self._http_get()
        self.attempts.append(Attempt(sent, result, detail))
        if result == self._last:
            self._run += 1
        else:
            self._last, self._run = result, 1
        threshold = self.failure_threshold if result == Result.FAILURE else self.success_threshold
        if self._run < threshold:
            return True
        self._set(result)
        if result == Result.FAILURE and self.kind in ("liveness", "startup"):
            self._on_hold, self._run = True, 0  # the container is killed; wait for a new one
        return True

    def _http_get(self) -> tuple[Result, str]:
        try:
            r = httpx.get(self.url, timeout=self.timeout, headers={"User-Agent": "kube-probe/1.35", "Accept": "*/*"})
        except httpx.TransportError as e:
            return Result.FAILURE, type(e).__name__
        return (Result.SUCCESS if 200 <= r.status_code < 400 else Result.FAILURE), str(r.status_code)

    def _set(self, result: Result) -> None:
        if result != self.state:
            self.state = result
            self.changes.append((time.monotonic() - self.started_at, result))
            self.on_change(self, result)
