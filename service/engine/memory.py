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
  first n_keep (Slot.shift_span) and generation goes on.
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
                lora: tuple[float, ...] = ()) -> int:
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
            keep = min(common_prefix(slot.cache_tokens, prompt), len(prompt) - 1)
        self.cache.keep(slot.id, keep)
        return keep

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
