"""The engine: one thread that owns the model and runs the serving loop.

    loop: take new tasks -> admit waiting tasks into free slots -> shift full contexts -> build
          one batch from the decode tokens of generating slots (each with its draft under --spec-type
          ngram-simple: speculative.py, or draft-simple: draft.py) and prompt chunks of the others -> forward ->
          sample each slot that produced logits (a drafted one, position by position while the
          draft holds) -> emit events -> release finished slots; idle for --sleep-idle-seconds:
          unload the model until a request needs it

HTTP handlers talk to it only through `submit()` / `call()` / `Task.cancel()` / `power.want()`
(thread-safe) and read counters; no model code ever runs on the event loop.

Which thread: the server runs `run()` on the process's main thread, the one that loaded the
model. Numba's OpenMP layer keeps one worker team per calling thread, and an idle team's
workers spin for a while after each parallel region: driving kernels from a second thread
left the first team spinning on the same cores and cut decode speed by 2-3x (measured:
60 against 170 tokens/s for SmolLM2 on 2 cores). `start()` runs the loop on a new thread
for in-process use where that does not matter. Sleeping and waking (power.py) load and unload
on the loop's thread for the same reason.
"""

from __future__ import annotations

import collections
import functools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import structlog

from service.engine.admission import Admission
from service.engine.generation import Generation
from service.engine.memory import CacheKeeper
from service.engine.power import PowerState, doze
from service.engine.scheduler import build_batch, pick_slot
from service.engine.slot import Slot, SlotState
from service.engine.speculative import draft_for, verify
from service.engine.stats import Stats
from service.engine.task import Embedding, EngineConfig, ErrorKind, Failure, StopType, Task
from service.model.logits import Logits
from service.model.model import Model
from service.sampling import Sampler, SamplerWorkspace, SamplingParams

log = structlog.get_logger("llamajit.engine")
EXCEEDED = "Context size has been exceeded."  # llama-server's words when a shared pool runs out
SHUTTING_DOWN = "Server is shutting down"  # the words of the 503 the HTTP gate gives while draining


class Engine:
    def __init__(self, model: Model, config: EngineConfig):
        self.model = model
        self.config = config
        self.n_ctx = model.n_ctx
        self.slots = [Slot(i, model.n_ctx) for i in range(config.n_slots)]
        for s in self.slots:  # an encoder's prompt attends both ways: never split between batches
            s.whole = not model.cfg.causal
        self.stats = Stats(config.t_start)
        self.memory = CacheKeeper(model, self.slots, config.cache_ram_mib, config.cache_idle_slots, config.pool)
        self.power = PowerState(config.sleep_idle_seconds, nudge=self.wake)
        self._add_bos = bool(getattr(model.tokenizer, "add_bos", False))
        # kvcache.shift turns keys back with plain RoPE: with llama3, longrope or YaRN scaling that
        # would be wrong, so such a model ends a full generation as without --context-shift.
        w = getattr(model, "weights", None)
        scaled = (getattr(model.cfg, "rope_ext_factor", 0.0) != 0
                  or any(getattr(w, k, None) is not None for k in ("rope_freqs", "rope_long", "rope_short")))
        self._shift = config.ctx_shift and not scaled
        if config.ctx_shift and scaled:
            log.warning("context shift is off: it does not support llama3/longrope/YaRN RoPE scaling")
        self._reuse_ok = config.cache_reuse_ok and not scaled  # --cache-reuse moves chunks by the same K-shift
        self._inbox: queue.SimpleQueue[Task | Callable | None] = queue.SimpleQueue()
        self._waiting: collections.deque[Task] = collections.deque()
        self._n_deferred = 0
        self._kv_asleep = 0.0  # kv_usage() as the server fell asleep
        self.admission = Admission(config.n_slots, config.max_queue, self.stats.refused)
        self._deferred_calls: list[tuple[int, Callable[[], None]]] = []  # (slot, fn): see call()
        self._ws = SamplerWorkspace(model.cfg.n_vocab)
        self._stop = threading.Event()
        self._closed = False  # close() ran: tasks that still arrive fail at once
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

    def submit(self, *tasks: Task) -> None:
        """Queue one request's tasks, all or none (QueueFull past --max-queue: admission.py)."""
        self.admission.take(tasks)
        self.power.want()
        for t in tasks:
            self._inbox.put(t)

    def call(self, fn: Callable[[], None], slot: int | None = None,
             refused: Callable[[str], None] | None = None) -> None:
        """Run fn on the engine thread between two steps (slot save/restore: the cache is only
        touched there), with the model loaded. fn reports its own result (e.g. through a future).
        With `slot`, fn waits until that slot is idle, as llama-server defers a slot action on a
        busy slot: it runs once the slot's task has ended, before a waiting task can take it.
        refused(why) is called instead when the model cannot be loaded for it (a failed reload)."""
        self.power.want()
        run = fn if slot is None else functools.partial(self._when_idle, slot, fn)
        self._inbox.put(_Call(run, refused) if refused is not None else run)

    def _when_idle(self, sid: int, fn: Callable[[], None]) -> None:
        if self.slots[sid].busy:
            self._deferred_calls.append((sid, fn))
        else:
            fn()

    def _run_deferred_calls(self) -> None:
        """Slot actions deferred by call(slot=...) whose slot is now idle, in arrival order."""
        ready = [(sid, fn) for sid, fn in self._deferred_calls if not self.slots[sid].busy]
        if ready:
            self._deferred_calls = [c for c in self._deferred_calls if self.slots[c[0]].busy]
            for _, fn in ready:
                fn()

    def wake(self) -> None:
        """Make the loop look at cancellations now (after Task.cancel())."""
        self._inbox.put(None)

    def close(self) -> None:
        """End every task at the loop's next look (from any thread: the drain deadline, service.cli).
        A sleeping engine runs nothing, and a control call would reload its model: the flag is enough."""
        self._closed = True  # a plain flag, read on the loop's thread
        if not self.power.sleeping:
            self._inbox.put(self._end_all)

    def warmup(self) -> None:
        """Run every kernel family once (prefill, decode, sampling) so that Numba compiles, or
        loads from its cache, before the server reports ready: otherwise the first request
        pays for it (measured: 78 s on a cold cache for SmolLM2)."""
        m = self.model
        if not m.cfg.causal:  # an encoder has no kernels to compile (NumPy) and no logits to sample
            return
        n = min(16, m.n_ctx - 2, m.max_batch)
        toks = [t % m.cfg.n_vocab for t in range(1, n + 1)]
        logits = m.eval(0, toks)
        sampler = Sampler(SamplingParams(), m.cfg.n_vocab, eog_ids=m.tokenizer.eog_ids, n_ctx=self.n_ctx,
                          workspace=self._ws)
        tok = sampler.sample(logits)
        m.eval(0, [tok])
        Sampler(SamplingParams(temperature=0.0, n_probs=2), m.cfg.n_vocab, workspace=self._ws).sample(logits)
        m.cache.clear(0)

    @property
    def n_busy(self) -> int:
        """Requests being processed (llamacpp:requests_processing)."""
        return sum(s.busy for s in self.slots)

    @property
    def n_deferred(self) -> int:
        """Requests that found no free slot and wait for one (llamacpp:requests_deferred); as in
        llama-server, a request not yet looked at by the loop is not counted."""
        return self._n_deferred

    @property
    def n_waiting(self) -> int:
        """Tasks submitted and not in a slot (llamajit:num_requests_waiting): unlike n_deferred,
        also those the loop has not looked at yet."""
        return max(0, len(self.admission) - self.n_busy)

    def kv_usage(self) -> float:
        """The share of the server's KV cells that hold a token (llamajit:kv_cache_usage_perc, 0..1):
        every slot's cached tokens, idle slots' reusable prompts included, over the whole -c."""
        if self.power.sleeping:  # a scrape while asleep repeats the last one before (llama-server's contract)
            return self._kv_asleep
        total = self.config.pool or self.n_ctx * len(self.slots)
        return min(1.0, sum(len(s.cache_tokens) for s in self.slots) / total) if total else 0.0

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """The serving loop, on the calling thread, until shutdown()."""
        while not self._stop.is_set():
            idle = not self._waiting and not self.n_busy and not self._deferred_calls
            self._take_inbox(block=idle)
            if idle and not self._waiting and self.power.wait_s() == 0:
                self._sleep()
                continue
            self._drop_cancelled()
            self._run_deferred_calls()
            self._admit()
            if not self.n_busy:
                continue
            self.power.t_active = time.monotonic()
            try:
                self._step()
            except Exception as e:  # a bug: fail the running tasks, keep serving others
                log.exception("engine step failed")
                self._fail_busy(f"engine error: {type(e).__name__}: {e}")

    def _take_inbox(self, block: bool) -> None:
        wait = self.power.wait_s() if block else None
        timeout = 0.5 if wait is None else min(0.5, max(wait, 0.001))
        try:
            item = self._inbox.get(timeout=timeout) if block else self._inbox.get_nowait()
            while True:
                self._handle(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _handle(self, item: Task | Callable | None) -> None:
        if item is None:  # a nudge (wake(), shutdown()): nothing to do but look around
            return
        self.power.t_active = time.monotonic()
        if isinstance(item, Task):
            if self._closed:
                self.admission.gone(item)
                item.sink(Failure(ErrorKind.UNAVAILABLE, SHUTTING_DOWN))
            else:
                self._waiting.append(item)
        else:  # a control call (see call()): runs here, between steps
            item()

    def _sleep(self) -> None:
        """Unload the model until a request needs it (power.doze); then serve what woke it."""
        self.stats.freeze()
        self._kv_asleep = self.kv_usage()
        self.memory.forget()
        self._ws = None
        draft = self.config.draft
        woken_by = doze(self.power, (self.model,) + ((draft.model,) if draft else ()), self._inbox, self._stop,
                        self._refuse_asleep)
        if draft:
            draft.forget()  # its caches came back empty
        if self._stop.is_set():
            return
        self._ws = SamplerWorkspace(self.model.cfg.n_vocab)
        self.stats.thaw()
        self._handle(woken_by)

    def _refuse_asleep(self, item: Task | Callable | None, why: str) -> None:
        """What woke a server whose model could not be reloaded: a task fails as unavailable (503);
        a control call runs and reports its own failure (its futures), never raising here."""
        if isinstance(item, Task):
            self.admission.gone(item)
            item.sink(Failure(ErrorKind.UNAVAILABLE, why))
        elif isinstance(item, _Call):
            item.refused(why)
        elif item is not None:
            try:
                item()
            except Exception:  # noqa: BLE001 - the call's own error path failed: log it, keep the loop
                log.exception("control call failed while the model is unloaded")

    def _drop_cancelled(self) -> None:
        for t in [t for t in self._waiting if t.cancelled]:
            self._waiting.remove(t)
            self.admission.gone(t)
        for s in self.slots:
            if s.busy and s.task.cancelled:
                self._release(s)

    def _end_all(self) -> None:
        """close(), on the loop's thread. A running generation ends as llama-server ends one that its
        time limit (t_max_predict_ms) stops: a final result, stop_type limit (finish_reason
        "length"), with the text made so far; so a stream gets its closing event, not a reset. A task
        still waiting for a slot, or an embedding, has nothing to give: it fails as unavailable (503)."""
        self._closed = True
        ended = [s.id for s in self.slots if s.busy and not s.task.cancelled]
        if ended or self._waiting:
            log.warning("drain deadline: ending generations", slots=ended, queued=len(self._waiting))
        for t in self._waiting:
            self.admission.gone(t)
            t.sink(Failure(ErrorKind.UNAVAILABLE, SHUTTING_DOWN))
        self._waiting.clear()
        self._n_deferred = 0
        for s in self.slots:
            if not s.busy or s.task.cancelled:
                continue
            if s.gen.params.embd:
                self._finish(s, Failure(ErrorKind.UNAVAILABLE, SHUTTING_DOWN))
            else:
                s.gen.stop_type = StopType.LIMIT
                self._finish(s)

    def _admit(self) -> None:
        still: collections.deque[Task] = collections.deque()
        while self._waiting:
            task = self._waiting.popleft()
            slot, update = pick_slot(self.slots, task, self.config.similarity)
            if slot is None:
                still.append(task)
                continue
            try:
                self._assign(slot, task, update)
            except Exception as e:  # a task that cannot start fails alone; the loop goes on
                log.exception("task could not start")
                if slot.busy and slot.task is task:
                    slot.release()
                self.admission.gone(task)
                task.sink(Failure(ErrorKind.INTERNAL, f"could not start the task: {type(e).__name__}: {e}"))
                continue
            self.memory.started()
        self._waiting = still
        self._n_deferred = len(still)

    def _assign(self, slot: Slot, task: Task, update: bool) -> None:
        p = task.params
        if not 0 < len(p.prompt) < slot.n_ctx:  # the HTTP edge checks first; this keeps the engine safe
            self.admission.gone(task)
            task.sink(Failure(ErrorKind.EXCEED_CONTEXT,
                              f"the prompt has {len(p.prompt)} tokens; it must have 1 to {slot.n_ctx - 1}"))
            return
        if not self.model.cfg.causal:  # an encoder: embeddings only, each prompt in one batch
            from service.model.encoder import refusal

            why = refusal(len(p.prompt), p.embd, self.model.max_batch)
            if why:  # llama-server's message; its 500 would call the client's mistake a server fault
                self.admission.gone(task)
                task.sink(Failure(ErrorKind.INVALID_REQUEST, why))
                return
        lora = p.lora if p.lora is not None else tuple(float(x) for x in self.model.adapters.scales())
        reuse = p.n_cache_reuse if self._reuse_ok else 0
        if p.n_cache_reuse > 0 and not self._reuse_ok and p.cache_prompt and not p.embd:
            log.warning("cache reuse is not supported - ignoring n_cache_reuse", slot=slot.id,
                        n_cache_reuse=p.n_cache_reuse)
        keep = self.memory.prepare(slot, p.prompt, p.cache_prompt, p.embd, update, lora, reuse)
        kw = {}
        if p.constraint is not None:  # each task matches from the grammar's start: n > 1 shares params
            kw["constraint"] = p.constraint.clone()
        sampler = Sampler(p.sampling, self.model.cfg.n_vocab, eog_ids=self.model.tokenizer.eog_ids,
                          dry_breakers=p.dry_breakers, n_ctx=self.n_ctx, workspace=self._ws, **kw)
        slot.assign(Generation(task, sampler, self.model.tokenizer, slot.id, keep, self.config.n_predict_default,
                               lora))
        self.stats.cached(keep)
        if p.stream and p.return_progress:  # llama-server's first progress event: nothing evaluated yet
            task.sink(slot.gen.progress(keep))

    def _step(self) -> None:
        for s in self.slots:
            if s.needs_shift and not (self._shift and self.memory.shift(s, self._add_bos)):
                s.gen.stop_type, s.gen.truncated = StopType.LIMIT, True  # nothing left to drop
                self._finish(s)
        room = self.memory.room(self.model.max_batch)
        if room == 0:  # a shared pool that is full of running tasks
            log.error(EXCEEDED, n_busy=self.n_busy)
            self._fail_busy(EXCEEDED, clear=True)
            return
        spec = self.config.spec
        drafter = functools.partial(draft_for, cfg=spec, model=self.config.draft) if spec.on else None  # with decode tokens
        plan = build_batch(self.slots, room, self.config.cont_batching, drafter)
        if plan is None:
            return
        batch, rows = plan
        t0 = time.perf_counter()
        c = self.config
        if c.threads_batch:  # -tb: as llama.cpp, batches of more than one token use the batch threads
            decode = c.threads or numba.config.NUMBA_NUM_THREADS
            numba.set_num_threads(c.threads_batch if len(batch.tokens) > 1 else decode)
        out = self.model.forward(batch)  # logits on the GPU stay there until a row or its top k is asked for
        n_prompt = sum(n for s, n, _ in rows if s.state is SlotState.PROMPT)
        self.stats.decoded(self.n_busy, int(self.model.cache.length.max()), n_prompt, time.perf_counter() - t0)
        r, h = 0, 0
        for slot, n, wants in rows:
            g = slot.gen
            was_prompt = slot.state is SlotState.PROMPT
            if was_prompt and g.params.embd:
                g.hidden_parts.append(out.hidden[h : h + n])  # out.hidden is new each call: no copy
                h += n
                if slot.prompt_done(n) and not g.task.cancelled:
                    self._release(slot)
                    g.task.sink(Embedding(np.concatenate(g.hidden_parts), len(g.params.prompt)))
                continue
            if was_prompt:
                slot.prompt_done(n)
                if g.params.stream and g.params.return_progress and not g.task.cancelled:
                    g.task.sink(g.progress(slot.i_prompt))
            ri = -1
            if wants:  # a drafted slot has a row per fed token: [last sampled, draft...]
                ri, r = r, r + 1 + len(slot.draft)
            if g.task.cancelled:
                continue
            if was_prompt and g.params.n_predict == 0:
                g.stop_type = StopType.LIMIT
                self._finish(slot)
                continue
            if ri < 0:
                continue
            try:
                if slot.draft:
                    verify(slot, slot.draft, out.logits, ri, self.model.cache, spec.n_draft_max, self._take,
                           self._emit)
                else:
                    self._next_token(slot, out.logits, ri)
            except Exception as e:  # this task's sampling or text failed: it ends alone, the others go on
                log.exception("task failed in an engine step", slot=slot.id)
                self._finish(slot, Failure(ErrorKind.INTERNAL, f"engine error: {type(e).__name__}: {e}"))

    def _next_token(self, slot: Slot, logits: Logits, ri: int) -> None:
        """Sample the slot's next token from logits row ri, take it, and emit or finish."""
        self._take(slot, logits, ri)
        self._emit(slot)

    def _take(self, slot: Slot, logits: Logits, ri: int) -> int:
        """Sample the slot's next token from logits row ri and record it; returns it."""
        g = slot.gen
        forced = g.budget.forced() if g.budget is not None else None  # a spent thinking budget
        tok, row = (forced, None) if forced is not None else self._sample(g.sampler, logits, ri)
        g.sampler.accept(tok)
        slot.on_token(tok, row, self._shift, forced=forced is not None)
        return tok

    def _emit(self, slot: Slot) -> None:
        """Finish the slot's task if its last token stopped it, else stream what is new."""
        g = slot.gen
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

    def _fail_busy(self, message: str, clear: bool = False) -> None:
        for s in self.slots:
            if s.busy:
                self._finish(s, Failure(ErrorKind.INTERNAL, message))
                if clear:  # how much of the failed batch got in is not tracked: start the slot over
                    self.memory.clear(s)

    def _finish(self, slot: Slot, failure: Failure | None = None) -> None:
        """End the slot's task: its last events go out once the slot is free, so that a client
        that reads /slots or /metrics right after its answer sees the slot idle."""
        g = slot.gen
        events = [failure] if failure is not None else []
        if failure is None:
            if g.params.stream:
                part = g.partial()
                if part is not None and part.content:
                    events.append(part)
            events.append(g.final())
        self._release(slot)
        for ev in events:
            g.task.sink(ev)

    def _release(self, slot: Slot) -> None:
        g = slot.gen
        if g is not None and g.generated:  # counted however the task ended, as llama-server does
            self.stats.generated(len(g.generated), g.timings().predicted_ms / 1e3)
            self.stats.drafted(g.drafts)
        if g is not None:
            self.stats.finished(*g.latencies(time.perf_counter()))
            self.admission.gone(g.task)
        # keep exactly the tokens whose KV is in the cache (the last sampled one is not), and no KV row past
        # them (a drafted step's rows, when its task was cancelled before they were checked)
        slot.cache_tokens = slot.cache_tokens[: int(self.model.cache.length[slot.id])]
        self.model.cache.keep(slot.id, len(slot.cache_tokens))
        slot.release()


@dataclass(frozen=True)
class _Call:
    """A control call that can be told it will not run (Engine.call's `refused`)."""

    run: Callable[[], None]
    refused: Callable[[str], None]

    def __call__(self) -> None:
        self.run()
