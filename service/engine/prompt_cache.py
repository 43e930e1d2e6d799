"""The host-RAM prompt cache (--cache-ram): copies of slots' cached prompts, keys and values
included, that a later task can load into any slot instead of evaluating its prompt again.

llama-server's rules (server_prompt_cache):
- save: a prompt already contained in an entry is not saved again; entries contained in the new
  prompt are dropped; the oldest entries go first to stay under the size limit (MiB; -1 = none)
  and under the token limit (the server's whole context, raised while the bytes allow);
- load: the entry that shares the longest prefix with the new prompt, as a fraction both of
  the entry (f_keep, at least 1/4: a large prompt is not thrown away for a small reuse) and of
  the new prompt (f_sim), wins only if it beats what the slot already holds on both counts;
  a loaded entry leaves the cache (it lives in the slot again).
Runs on the engine thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog

from service.engine.slot import common_prefix

log = structlog.get_logger("llamajit.engine")
_MIB = 1024 * 1024


@dataclass(eq=False)  # entries are told apart by identity: take()'s list.remove must never compare arrays
class Entry:
    tokens: list[int]
    k: np.ndarray  # (n_layer, n_head_kv, n_tokens, head_dim), host copies
    v: np.ndarray
    lora: tuple[float, ...] = ()  # the LoRA scales it was evaluated with: reused only under the same

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


class PromptCache:
    def __init__(self, limit_mib: int, limit_tokens: int):
        self.limit_bytes = max(0, limit_mib) * _MIB  # 0: no limit
        self.limit_tokens = limit_tokens
        self.entries: list[Entry] = []  # oldest first

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries)

    @property
    def n_tokens(self) -> int:
        return sum(len(e.tokens) for e in self.entries)

    def save(self, tokens: list[int], nbytes: int, read: Callable[[], tuple[np.ndarray, np.ndarray]],
             lora: tuple[float, ...] = ()) -> bool:
        """Keep a copy of a prompt whose keys and values (nbytes of them) read() returns; False
        when it was not saved (empty, already held, or larger than the whole cache)."""
        if not tokens or any(e.lora == lora and common_prefix(e.tokens, tokens) == len(tokens) for e in self.entries):
            return False
        if self.limit_bytes and nbytes > self.limit_bytes:
            log.warning("prompt state exceeds the cache size limit, not saved", mib=round(nbytes / _MIB, 3))
            return False
        self.entries = [e for e in self.entries if e.lora != lora or common_prefix(e.tokens, tokens) < len(e.tokens)]
        while self.entries and self.limit_bytes and self.nbytes + nbytes > self.limit_bytes:
            self.entries.pop(0)
        k, v = read()
        self.entries.append(Entry(list(tokens), k, v, lora))
        return True

    def take(self, held: list[int], new: tuple[int, ...] | list[int], lora: tuple[float, ...] = ()) -> Entry | None:
        """The entry to load for a prompt `new` into a slot that holds `held`, removed from the
        cache; None when nothing beats what the slot holds."""
        lcp = common_prefix(held, new)
        f_keep_best = lcp / len(held) if held else -1.0  # an empty slot: any entry wins
        f_sim_best = lcp / len(new)
        best = None
        for e in self.entries:
            if e.lora != lora:
                continue
            n = common_prefix(e.tokens, new)
            f_keep, f_sim = n / len(e.tokens), n / len(new)
            if f_keep >= 0.25 and f_keep > f_keep_best and f_sim > f_sim_best:
                f_keep_best, f_sim_best, best = f_keep, f_sim, e
        if best is not None:
            self.entries.remove(best)
        return best

    def trim(self) -> None:
        """Drop the oldest entries past the limits (after a save or a load)."""
        while self.entries and self.limit_bytes and self.nbytes > self.limit_bytes:
            self.entries.pop(0)
        per_token = max(1.0, self.nbytes / max(1, self.n_tokens))
        limit = max(self.limit_tokens, int(self.limit_bytes / per_token)) if self.limit_bytes else self.limit_tokens
        while self.entries and limit and self.n_tokens > limit:
            self.entries.pop(0)
        log.debug("prompt cache state", prompts=len(self.entries), mib=round(self.nbytes / _MIB, 3),
                  tokens=self.n_tokens)

    def clear(self) -> None:
        self.entries = []
