"""The engine: one thread that owns the model and runs the serving loop.

    loop: take new tasks -> admit waiting tasks into free slots -> build one batch from the
          decode tokens of generating slots and prompt chunks of the others -> forward ->
          sample each slot that produced logits -> emit events -> release finished slots

HTTP handlers talk to it only through `submit()` / `Task.cancel()` (thread-safe) and read
counters; no model code ever runs on the event loop.

Which thread: the server runs `run()` on the process's main thread, the one that loaded the
model. Numba's OpenMP layer keeps one worker team per calling thread, and an idle team's
workers spin for a while after each parallel region: driving kernels from a second thread
left the first team spinning on the same cores and cut decode speed by 2-3x (measured:
60 against 170 tokens/s for SmolLM2 on 2 cores). `start()` runs the loop on a new thread
for in-process use where that does not matter.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
import queue
import threading
import numpy as np
import structlog

from service.engine.generation import Generation
from service.engine.scheduler import build_batch, pick_slot
from service.engine.slot import Slot, SlotState, common_prefix
from service.engine.stats import Stats
from service.engine.task import Embedding, ErrorKind, Failure, StopType, Task
from service.model.logits import Logits
from service.model.model import Model
from service.sampling import Sampler, SamplerWorkspace, SamplingParams

log = structlog.get_logger("llamajit.engine")


class Engine:
    def __init__(self, model: Model, n_slots: int, n_predict_cap: int = -1):
        self.model = model
        self.n_ctx = model.n_ctx
        self.slots = [Slot(i, model.n_ctx) for i in range(n_slots)]
        self.n_predict_cap = n_predict_cap
        self.stats = Stats()
        self._inbox: queue.SimpleQueue[Task | Callable | None] = queue.SimpleQueue()
        self._waiting: collections.deque[Task] = collections.deque()
        self._n_deferred = 0
        self._ws = SamplerWorkspace(model.cfg.n_vocab)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="engine", daemon=True)

    # -- the HTTP side ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the loop (from any thread); joins it when start() ran it."""
        self._stop.set()
        self._inbox.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, task: Task) -> None:
        self._inbox.put(task)

    def warmup(self) -> None:
        """Run every kernel family once (prefill, decode, sampling) so that Numba compiles, or
        loads from its cache, before the server reports ready: otherwise the first request
        pays for it (measured: 78 s on a cold cache for SmolLM2)."""
        m = self.model
        n = min(16, m.n_ctx - 2, m.max_batch)
        toks = [t % m.cfg.n_vocab for t in range(1, n + 1)]
        logits = m.eval(0, toks)
        sampler = Sampler(SamplingParams(), m.cfg.n_vocab, eog_ids=m.tokenizer.eog_ids, n_ctx=self.n_ctx,
                          workspace=self._ws)
        tok = sampler.sample(logits)
        m.eval(0, [tok])
        Sampler(SamplingParams(temperature=0.0, n_probs=2), m.cfg.n_vocab, workspace=self._ws).sample(logits)
        m.cache.clear(0)

    def call(self, fn: Callable[[], None]) -> None:
        """Run fn on the engine thread between two steps (slot save/restore: the cache is only
        touched there). fn reports its own result (e.g. through a future)."""
        self._inbox.put(fn)

    def wake(self) -> None:
        """Make the loop look at cancellations now (after Task.cancel())."""
        self._inbox.put(None)

    @property
    def n_busy(self) -> int:
        """Requests being processed (llamacpp:requests_processing)."""
        return sum(s.busy for s in self.slots)

    @property
    def n_deferred(self) -> int:
        """Requests that found no free slot and wait for one (llamacpp:requests_deferred); as in
        llama-server, a request not yet looked at by the loop is not counted."""
        return self._n_deferred

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """The serving loop, on the calling thread, until shutdown()."""
        while not self._stop.is_set():
            idle = not self._waiting and not any(s.busy for s in self.slots)
            self._take_inbox(block=idle)
            self._drop_cancelled()
            self._admit()
            if not any(s.busy for s in self.slots):
                continue
            try:
                self._step()
            except Exception as e:  # a bug: fail the running tasks, keep serving others
                log.exception("engine step failed")
                for s in self.slots:
                    if s.busy:
                        self._finish(s, Failure(ErrorKind.INTERNAL, f"engine error: {type(e).__name__}: {e}"))

    def _take_inbox(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
            while True:
                if isinstance(item, Task):
                    self._waiting.append(item)
                elif item is not None:  # a control call (see call()): runs here, between steps
                    item()
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _drop_cancelled(self) -> None:
        for t in [t for t in self._waiting if t.cancelled]:
            self._waiting.remove(t)
        for s in self.slots:
            if s.busy and s.task.cancelled:
                self._release(s)

    def _admit(self) -> None:
        still: collections.deque[Task] = collections.deque()
        while self._waiting:
            task = self._waiting.popleft()
            slot = pick_slot(self.slots, task)
            if slot is None:
                still.append(task)
                continue
            try:
                self._assign(slot, task)
            except Exception as e:  # a task that cannot start fails alone; the loop goes on
                if slot.busy and slot.task is task:
                    slot.release()
                task.sink(Failure(ErrorKind.INTERNAL, f"could not start the task: {type(e).__name__}: {e}"))
        self._waiting = still
        self._n_deferred = len(still)

    def _assign(self, slot: Slot, task: Task) -> None:
        p = task.params
        if not 0 < len(p.prompt) < self.n_ctx:  # the HTTP edge checks first; this keeps the engine safe
            task.sink(Failure(ErrorKind.EXCEED_CONTEXT,
                              f"the prompt has {len(p.prompt)} tokens; it must have 1 to {self.n_ctx - 1}"))
            return
        keep = 0
        if p.cache_prompt and not p.embd:  # embeddings need every token's hidden state
            keep = min(common_prefix(slot.cache_tokens, p.prompt), len(p.prompt) - 1)
        self.model.cache.keep(slot.id, keep)
        kw = {}
        if p.constraint is not None:  # each task matches from the grammar's start: n > 1 shares params
            kw["constraint"] = p.constraint.clone()
        sampler = Sampler(p.sampling, self.model.cfg.n_vocab, eog_ids=self.model.tokenizer.eog_ids,
                          dry_breakers=p.dry_breakers, n_ctx=self.n_ctx, workspace=self._ws, **kw)
        slot.assign(Generation(task, sampler, self.model.tokenizer, slot.id, keep))

    def _step(self) -> None:
        plan = build_batch(self.slots, self.model.max_batch)
        if plan is None:
            return
        batch, rows = plan
        out = self.model.forward(batch)  # logits on the GPU stay there until a row or its top k is asked for
        self.stats.decoded(sum(s.busy for s in self.slots), max(len(s.cache_tokens) for s, _, _ in rows))
        r, h = 0, 0
        for slot, n, wants in rows:
            g = slot.gen
            was_prompt = slot.state is SlotState.PROMPT
            if was_prompt and g.params.embd:
                g.hidden_parts.append(out.hidden[h : h + n])  # out.hidden is new each call: no copy
                h += n
                if slot.prompt_done(n) and not g.task.cancelled:
                    g.task.sink(Embedding(np.concatenate(g.hidden_parts), len(g.params.prompt)))
                    self._release(slot)
                continue
            if was_prompt:
                slot.prompt_done(n)
            ri = -1
            if wants:
                ri, r = r, r + 1
            if g.task.cancelled:
                continue
            if was_prompt and g.params.n_predict == 0:
                g.stop_type = StopType.LIMIT
                self._finish(slot)
                continue
            if ri < 0:
                continue
            tok, row = self._sample(g.sampler, out.logits, ri)
            g.sampler.accept(tok)
            slot.on_token(tok, row, self.n_predict_cap)
            if g.stopped:
                self._finish(slot)
            elif g.params.stream:
                part = g.partial()
                if part is not None:
                    g.task.sink(part)

    @staticmethod
    def _sample(sampler: Sampler, logits: Logits, ri: int) -> tuple[int, np.ndarray | None]:
        """(token, the host row of logits or None): logits that serve top_k (those left on the GPU)
        send only their top k when the chain allows (Sampler.top_k_first), else the row."""
        k = sampler.top_k_first
        if 0 < k <= logits.max_k:
            return sampler.sample_top(*logits.top_k(ri, k)), None
        row = logits.row(ri)
        return sampler.sample(row), row

    def _finish(self, slot: Slot, failure: Failure | None = None) -> None:
        g = slot.gen
        task = g.task
        if failure is not None:
            task.sink(failure)
        else:
            if g.params.stream:
                part = g.partial()
                if part is not None and part.content:
                    task.sink(part)
            final = g.final()
            self.stats.finished(final)
            task.sink(final)
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        # keep exactly the tokens whose KV is in the cache (the last sampled one is not)
        slot.cache_tokens = slot.cache_tokens[: int(self.model.cache.length[slot.id])]
        slot.release()

