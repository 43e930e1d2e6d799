"""Which tasks the engine holds, from submission to their end, and the --max-queue bound on them.

A task is held from Engine.submit (the HTTP side, any thread) until the engine thread ends it:
its last event was sent, or it was dropped (cancelled, refused while draining, could not start).
The count is what the bound needs: the engine's own waiting list misses the tasks still in its
inbox, which a burst fills before the loop looks.

With --max-queue N, a request whose tasks would make more than slots + N held tasks is refused
as a whole (QueueFull; the HTTP side answers 503 with Retry-After) and counted. 0: no bound.
"""

from __future__ import annotations

import threading

from service.engine.task import QueueFull, Task


class Admission:
    def __init__(self, n_slots: int, max_queue: int, on_refused=lambda: None):
        self.n_slots, self.max_queue = n_slots, max_queue
        self._held: set[int] = set()  # task ids
        self._lock = threading.Lock()
        self._on_refused = on_refused

    def take(self, tasks: tuple[Task, ...]) -> None:
        """Hold all of `tasks`, or none: QueueFull when they would not fit."""
        with self._lock:
            cap = self.max_queue
            if cap > 0 and len(self._held) + len(tasks) > self.n_slots + cap:
                self._on_refused()
                raise QueueFull(f"the server is busy: {self.n_slots} slots and a queue of {cap} are taken; "
                                "retry later")
            self._held.update(t.id for t in tasks)

    def gone(self, task: Task) -> None:
        """The task ended; idempotent (some paths may report the same task twice)."""
        with self._lock:
            self._held.discard(task.id)

    def __len__(self) -> int:
        return len(self._held)
