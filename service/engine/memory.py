"""The slots' KV caches as a resource, as llama-server manages them (engine thread only):

- prefix reuse: a task keeps the part of its slot's cache that its prompt starts with
  (cache_prompt), all but the last prompt token, whose logits are needed;
- the RAM prompt cache (--cache-ram, prompt_cache.py): when the scheduler says so (a slot
  picked by LRU, or by similarity but keeping little of it), the slot's prompt is saved there
  and the best entry for the new prompt loaded instead; with --cache-idle-slots, every task
  that starts saves the idle slots' prompts too (and, with a unified pool, frees them);
- the unified pool (-kvu, or -np auto): every slot may grow to the whole context, but all of
  them together hold at most that many tokens. A batch that does not fit first frees idle
  slots, one at a time; when nothing is left to free, every running task fails with llama-server's
  "Context size has been exceeded." (see Engine);
- context shift (--context-shift): a slot about to run out of room drops tokens after its
  first n_keep (Slot.shift_span) and generation goes on;
- prefix sharing: a prompt whose start another slot holds (a shared system prompt, a
  conversation that last ran elsewhere) copies those rows from it when that beats what its own
  slot holds; the donor may be busy, since the rows of its prompt never change while it runs;
- chunk reuse (--cache-reuse N, a request's n_cache_reuse): past the common prefix, runs of at
  least N cached tokens that the prompt repeats in the same order, with cached tokens left out
  between them, move into place by the same K-shift instead of being evaluated again (what
  llama-server does for editors that cut text out of a long prompt, e.g. FIM completion).
"""

from __future__ import annotations

import structlog

from service.engine.prompt_cache import PromptCache
from service.engine.slot import Slot, common_prefix

log = structlog.get_logger("llamajit.engine")


class CacheKeeper:
    def __init__(self, model, slots: list[Slot], cache_ram_mib: int, cache_idle_slots: bool, pool: int):
        self.model = model
        self.slots = slots
        self.pool = pool  # tokens all slots share; 0: each slot has its own n_ctx
        self.bytes_per_token = model.cache.bytes_per_token  # keys and values in their -ctk / -ctv types
        total = pool or model.n_ctx * len(slots)  # the server's whole context: the cache's token limit
        self.ram = PromptCache(cache_ram_mib, total) if cache_ram_mib != 0 else None
        self.idle_slots = cache_idle_slots
        if cache_idle_slots and self.ram is None:
            log.warning("--cache-idle-slots requires --cache-ram, disabling")
            self.idle_slots = False
        if self.idle_slots:  # llama-server's marker, which its tests look for in the debug log
            log.debug("__TEST_TAG_CACHE_IDLE_SLOTS_ENABLED__", clears_idle_slots=bool(pool))

    @property
    def cache(self):
        return self.model.cache  # rebuilt after a sleep, so never held here

    # -- a task starts -----------------------------------------------------------------------

    def prepare(self, slot: Slot, prompt: tuple[int, ...], cache_prompt: bool, embd: bool, update: bool,
                lora: tuple[float, ...] = (), reuse: int = 0) -> int:
        """Make the slot's cache ready for a prompt evaluated with LoRA scales `lora`; returns how
        many of its tokens are reused. Keys and values computed under other adapter scales are
        other numbers: such a cache is not reused (saved to the RAM cache first when updating)."""
        saved = False
        if slot.lora != lora:
            saved = update and self.ram is not None and not embd and self.save(slot)
            slot.cache_tokens = []
            slot.lora = lora
        if update and self.ram is not None and not embd:  # only generations go through the RAM cache
            log.debug("updating prompt cache", slot=slot.id)
            if not saved:
                self.save(slot)
            e = self.ram.take(slot.cache_tokens, prompt, lora)
            if e is not None:
                self.cache.write(slot.id, e.k, e.v)
                slot.cache_tokens = e.tokens
                log.debug("prompt loaded from the prompt cache", slot=slot.id, n_tokens=len(e.tokens))
            self.ram.trim()
        keep = 0
        if cache_prompt and not embd:  # embeddings need every token's hidden state
            keep = self.share_prefix(slot, prompt, common_prefix(slot.cache_tokens, prompt), lora)
            if reuse > 0:
                keep = self.reuse_chunks(slot, prompt, keep, reuse)
            keep = min(keep, len(prompt) - 1)
        self.cache.keep(slot.id, keep)
        return keep

    def share_prefix(self, slot: Slot, prompt: tuple[int, ...], n_own: int, lora: tuple[float, ...]) -> int:
        """Copy the longest prefix of `prompt` that another slot's cache holds (evaluated under the
        same LoRA scales) into this slot when it is longer than the n_own tokens this slot shares
        with the prompt; returns how many leading prompt tokens the slot now holds."""
        best, n_best = None, n_own
        for s in self.slots:
            if s is slot or s.lora != lora:
                continue
            n = common_prefix(s.cache_tokens[: int(self.cache.length[s.id])], prompt)
            if n > n_best:
                best, n_best = s, n
        if best is None:
            return n_own
        self.cache.copy(best.id, slot.id, n_best)
        slot.cache_tokens = list(prompt[:n_best])
        log.info("prompt prefix copied from another slot", slot=slot.id, src_slot=best.id, n_tokens=n_best,
                 n_own=n_own)
        return n_best

    def reuse_chunks(self, slot: Slot, prompt: tuple[int, ...], n_past: int, min_chunk: int) -> int:
        """llama-server's chunk reuse: walk the slot's cached tokens past the common prefix n_past;
        wherever at least min_chunk of them match the prompt's next tokens, drop the cached tokens
        skipped to get there and shift the chunk down into place (kvcache.shift re-rotates its
        keys); returns how many leading prompt tokens the cache now holds. The prompt side never
        skips: only text removed from the cached prompt is found, not text inserted into it."""
        cached = slot.cache_tokens[: int(self.cache.length[slot.id])]
        head_c = head_p = n_past  # next cached token, next prompt token
        log.debug("trying to reuse cached chunks", slot=slot.id, min_chunk=min_chunk, n_past=n_past)
        while head_c < len(cached) and head_p < len(prompt):
            n = 0
            while (head_c + n < len(cached) and head_p + n < len(prompt)
                   and cached[head_c + n] == prompt[head_p + n]):
                n += 1
            if n < min_chunk:
                head_c += 1
                continue
            if head_c > head_p:  # cached [head_p, head_c) goes; the chunk and all after it move down
                log.debug("reusing a cached chunk", slot=slot.id, n=n, src=[head_c, head_c + n],
                          dst=[head_p, head_p + n])
                self.cache.shift(slot.id, head_p, head_c - head_p)
                cached = cached[:head_p] + cached[head_c:]
                head_c = head_p
            head_c += n
            head_p += n
        slot.cache_tokens = cached
        log.debug("after chunk reuse", slot=slot.id, n_past=head_p)
        return head_p

    def started(self) -> None:
        """A task took a slot: with --cache-idle-slots, save the idle slots' prompts (freeing
        them when the pool is shared, where their room is worth something to the others)."""
        if not self.idle_slots:
            return
        for s in self.slots:
            if s.busy:
                continue
            if self.save(s):
                log.debug("__TEST_TAG_CACHE_IDLE_SLOT__", slot=s.id, n_tokens=len(s.cache_tokens))
            if self.pool:
                self.clear(s)

    def save(self, slot: Slot) -> bool:
        n = int(self.cache.length[slot.id])
        if self.ram is None or n == 0:
            return False
        saved = self.ram.save(slot.cache_tokens[:n], n * self.bytes_per_token, lambda: self.cache.read(slot.id, n),
                              slot.lora)
        if saved:
            self.ram.trim()
        return saved

    def clear(self, slot: Slot) -> None:
        self.cache.clear(slot.id)
        slot.cache_tokens = []

    # -- each step ----------------------------------------------------------------------------

    def room(self, want: int) -> int:
        """How many tokens the next batch may add (at most `want`): with a shared pool, what is
        left of it, after freeing idle slots' caches (one at a time) while nothing is."""
        if not self.pool:
            return want
        while True:
            free = self.pool - int(self.cache.length.sum())
            if free > 0:
                return min(want, free)
            idle = next((s for s in self.slots if not s.busy and s.cache_tokens), None)
            if idle is None:
                return 0
            log.warning("purging slot", slot=idle.id, n_tokens=len(idle.cache_tokens))
            self.clear(idle)

    def shift(self, slot: Slot, add_bos: bool) -> bool:
        """Context shift for a slot with no room left; False when nothing can be dropped."""
        n_keep, n_discard = slot.shift_span(add_bos)
        if n_discard <= 0:
            return False
        log.warning("slot context shift", slot=slot.id, n_keep=n_keep, n_discard=n_discard,
                    n_left=len(slot.cache_tokens) - 1 - n_keep)
        self.cache.shift(slot.id, n_keep, n_discard)
        slot.shifted(n_keep, n_discard)
        return True

    def forget(self) -> None:
        """Everything cached goes (the server falls asleep)."""
        for s in self.slots:
            s.cache_tokens = []
        if self.ram is not None:
            self.ram.clear()
