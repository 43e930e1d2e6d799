"""--sleep-idle-seconds: after N idle seconds the model's memory goes, and comes back on demand.

State machine (Power), read from any thread, changed under a lock:

    AWAKE --idle N s (engine thread: unload)--> SLEEPING --want() or a task (any thread)--> WAKING
      ^                                                                                       |
      +------------------------------ engine thread: reload -----------------------------------+

What goes: the packed weights, the KV cache and the forward pass's buffers (Model.weights,
.cache, .forward), the sampler workspace, every slot's cached prompt and the RAM prompt cache.
What stays: the Model object with its GGUF mapping, config and tokenizer, so that /health,
/props, /models and /metrics answer without waking (as in llama-server) and handlers that only
tokenize keep their objects. Loading and unloading run on the engine thread, the main one
(service.engine.engine says why kernels run there).

A request that needs the model calls want(): a sleeping server reports itself awake from then
on (/props is_sleeping) while the engine thread reloads; tasks queue behind the reload.
"""

from __future__ import annotations

import ctypes
import enum
import gc
import queue
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("llamajit.engine")


class Power(enum.Enum):
    AWAKE = "awake"
    SLEEPING = "sleeping"
    WAKING = "waking"  # asked to wake; the engine thread is reloading


class PowerState:
    def __init__(self, idle_seconds: float, nudge=lambda: None):
        self.idle_seconds = idle_seconds  # <= 0: never sleep
        self._nudge = nudge  # makes the sleeping engine thread look at the state now
        self.state = Power.AWAKE
        self._lock = threading.Lock()
        self.t_active = time.monotonic()  # the engine's last activity: a task, a call or a step

    @property
    def sleeping(self) -> bool:
        return self.state is Power.SLEEPING

    def want(self) -> bool:
        """A request needs the model (any thread): start waking if asleep. True if it was."""
        with self._lock:
            if self.state is not Power.SLEEPING:
                return False
            self.state = Power.WAKING
        self._nudge()
        return True

    def wait_s(self) -> float | None:
        """Seconds until an idle engine is due to sleep (None: never)."""
        if self.idle_seconds <= 0 or self.state is not Power.AWAKE:
            return None
        return max(0.0, self.t_active + self.idle_seconds - time.monotonic())

    def fell_asleep(self) -> None:
        with self._lock:
            self.state = Power.SLEEPING

    def woke(self) -> None:
        with self._lock:
            self.state = Power.AWAKE
        self.t_active = time.monotonic()


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def doze(power: PowerState, models, inbox: queue.SimpleQueue, stop: threading.Event,
         refuse: Callable[[object, str], None] = lambda item, why: None):
    """Unload the models (the served one, and a draft model), sleep until something needs them,
    reload them; returns the task or control call that woke the engine (None when a want() did,
    or when `stop` was set: then nothing is reloaded). A reload that fails (memory, most likely)
    leaves the server asleep: `refuse(item, why)` answers what woke it, and the next request
    tries again, so the engine thread lives on."""
    unload(models)
    power.fell_asleep()
    log.info("server is entering sleeping state")
    while True:
        woken_by = None
        while not stop.is_set() and power.state is Power.SLEEPING:
            try:
                woken_by = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if woken_by is not None:  # a task or a call (None is a nudge: look at the state again)
                power.want()
        if stop.is_set():
            return None
        log.info("server is exiting sleeping state")
        t0 = time.perf_counter()
        try:
            for m in models:
                m.reload()
        except Exception as e:  # noqa: BLE001 - whatever it was, the models stay unloaded and the server up
            log.exception("model reload failed, staying asleep")
            unload(models)
            gc.collect()
            power.fell_asleep()
            refuse(woken_by, f"the model could not be reloaded: {type(e).__name__}: {e}")
            continue
        log.info("model reloaded", seconds=round(time.perf_counter() - t0, 2))
        power.woke()
        return woken_by


def unload(models) -> None:
    """Drop each model's weights, KV cache and forward buffers (Model.reload() rebuilds them)."""
    for m in models:
        m.unload()
    gc.collect()  # anything of theirs caught in a reference cycle goes now, not at some later collection
    _give_back_heap()


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to do
        return None


def prefer_mappings() -> None:
    """Give every allocation of 64 KiB or more its own mapping, which a free unmaps. Called before
    the first load when the server may sleep: glibc otherwise keeps what NumPy frees in its arenas,
    where the packed weights' many sub-megabyte arrays (packed on a thread pool, so in several
    arenas) mostly stay. Measured on SmolLM2: with glibc's default, malloc_trim alone gave back 60
    to 66 of 160 MB at the first sleep; with mappings from the start each sleep gives back all of a
    load's ~110 MB. (The cost, a mapping per large temporary, is a few microseconds against
    milliseconds per step.)"""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)


def _give_back_heap() -> None:
    """Return freed heap memory to the system (see prefer_mappings for what stays otherwise)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)  # (for a server that did not set it at start)
        libc.malloc_trim(0)
