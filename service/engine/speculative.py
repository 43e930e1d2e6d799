"""Speculative decoding with n-gram drafts (llama-server's --spec-type ngram-simple), and the draft step
shared with a draft model's drafts (--spec-type draft-simple with -md: draft.py).

Drafting: the slot's token history (prompt and generated tokens, the last sampled one included)
ends with an n-gram of size_n tokens; the latest earlier place where the same n-gram occurs is
looked up, and the tokens that followed it there (at most size_m, and at least size_n of them, or
none) are proposed as the continuation. Repetitive output (code being rewritten, a quoted
document, a list that repeats its shape) finds its continuation in its own history.

Verification: the slot's step feeds [last sampled token, draft...] in one forward pass with logits
at every position; the engine then samples position by position with the slot's own sampler, as
it would one step at a time, and goes on while the sampled token equals the drafted one. The
first mismatch's sampled token is kept, the rest of the draft dropped. Since the sampler sees
exactly the tokens it would have seen without speculation (grammar, penalties, the random
stream included), the output is the one of plain decoding whenever the batched logits equal the
one-token ones. The KV rows of rejected positions are cut off (KVCache.keep) once the tokens are
taken, before the task can end, so that they are never read and the next step writes over them.

Counters follow llama-server's: drafted tokens when a draft is made, accepted tokens and
verification steps when it is checked, accepted tokens per draft position (server_slot.stats).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NGRAM_SIMPLE = "ngram-simple"
DRAFT_SIMPLE = "draft-simple"


@dataclass(frozen=True)
class SpecConfig:
    """The server's speculative decoding flags (--spec-type, --spec-ngram-simple-size-n/-m, and a draft
    model's --spec-draft-n-max/-n-min/-p-min)."""

    types: tuple[str, ...] = ("none",)
    size_n: int = 12  # the n-gram looked up
    size_m: int = 48  # the most tokens drafted after it
    n_max: int = 3  # a draft model's most tokens per draft
    n_min: int = 0  # ... its fewest (a shorter draft is dropped)
    p_min: float = 0.0  # ... and the least probability of a drafted token (greedy)

    @property
    def on(self) -> bool:
        return NGRAM_SIMPLE in self.types or DRAFT_SIMPLE in self.types

    @property
    def ngram(self) -> bool:
        return NGRAM_SIMPLE in self.types

    @property
    def n_draft_max(self) -> int:
        """The longest draft any enabled type makes: the length of the accepted-per-position counts."""
        return max(self.size_m if self.ngram else 0, self.n_max if DRAFT_SIMPLE in self.types else 0, 1)

    @property
    def name(self) -> str:
        """The types as llama-server prints them (generation settings' "speculative.types")."""
        return ",".join(self.types)


@dataclass
class DraftStats:
    """One generation's speculative counters (llama-server's slot stats)."""

    n_drafted: int = 0  # tokens proposed
    n_accepted: int = 0  # of those, taken
    n_steps: int = 0  # verification steps
    per_pos: list[int] = field(default_factory=list)  # accepted tokens per draft position (size_m once used)

    def verified(self, n_accepted: int, size_m: int) -> None:
        self.n_accepted += n_accepted
        self.n_steps += 1
        if not self.per_pos:
            self.per_pos = [0] * size_m
        for i in range(min(n_accepted, size_m)):
            self.per_pos[i] += 1


def ngram_draft(history: np.ndarray, sampled: int, size_n: int, size_m: int) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the history's final n-gram.

    history: int64 (L,) the tokens whose KV is cached; sampled: the token sampled after them, the
    n-gram's last. Empty when the history is too short (L <= size_n + size_m + 1), when the n-gram
    occurs nowhere earlier (position 0 is not searched), or when fewer than size_n tokens follow it."""
    n_hist = len(history)
    if n_hist <= size_n + size_m + 1:
        return []
    pattern = np.empty(size_n, np.int64)  # (size_n,): the last size_n - 1 history tokens, then `sampled`
    pattern[:-1] = history[n_hist - size_n + 1 :]
    pattern[-1] = sampled
    last = n_hist - size_n - 1  # the latest start searched: it ends before the n-gram at the end
    ok = history[1 : last + 1] == pattern[0]  # (last,) ok[j - 1]: start j matches so far
    for k in range(1, size_n):
        ok &= history[1 + k : last + 1 + k] == pattern[k]
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        return []
    start = int(hits[-1]) + 1 + size_n  # the first token after the match
    n = min(size_m, n_hist - start)
    if n < size_n:
        return []
    return history[start : start + n].tolist()


def draft_for(slot, room: int, cfg: SpecConfig, model=None) -> list[int]:
    """The draft for a generating slot's next step, within its limits: the context (one position
    kept free, as llama-server leaves room for a context shift), the tokens left under n_predict
    (the draft's last token would be one too many), `room` tokens of the batch, and the request's
    speculative.n_max / n_min. As in llama-server, the n-gram draft comes first; when it finds
    nothing, the draft model (model: draft.DraftModel, None without -md) drafts. Counted as drafted
    when not empty."""
    g = slot.gen
    p = g.params
    n_max = min(slot.n_ctx - len(slot.cache_tokens) - 1, room)
    if g.n_remain > 0:
        n_max = min(n_max, g.n_remain - 1)
    if p.spec_n_max >= 0:
        n_max = min(n_max, p.spec_n_max)
    if n_max <= 0:
        return []
    toks = slot.cache_tokens
    draft = []
    if cfg.ngram:
        draft = ngram_draft(np.asarray(toks[:-1], np.int64), toks[-1], cfg.size_n, cfg.size_m)[:n_max]
        for i, t in enumerate(draft):
            if t < 0:  # an image row's placeholder is no token to feed
                draft = draft[:i]
                break
        if len(draft) < max(p.spec_n_min, 1):
            draft = []
    if not draft and model is not None:
        draft = model.draft(slot.id, toks, n_max)
        if len(draft) < max(p.spec_n_min, 1):
            draft = []
    g.drafts.n_drafted += len(draft)
    return draft


def verify(slot, draft: list[int], logits, ri: int, kv, size_m: int, take: Callable[[object, object, int], int],
           emit: Callable[[object], None]) -> None:
    """Take a drafted slot's tokens from logits rows ri .. ri + len(draft): position i's row follows
    draft[i - 1]. take(slot, logits, row) samples and records one token; emit(slot) streams what
    is new, or ends the task once it stopped (only the last take can stop it). kv: the model's KVCache;
    its rows past the fed token and the accepted drafts are dropped before the last emit, so that a
    task that ends there keeps only valid rows, and the next step writes over them."""
    g = slot.gen
    n_kv = len(slot.cache_tokens)  # rows valid before position 0 is taken: the fed token's included
    n_ok = 0
    for i in range(len(draft) + 1):
        tok = take(slot, logits, ri + i)
        hit = i < len(draft) and tok == draft[i]
        n_ok += hit
        if g.stopped or not hit:
            break
        emit(slot)  # an accepted token goes out now, as a step of its own would send it
    kv.keep(slot.id, n_kv + i)  # the fed token and draft[:i]: the last token taken is fed next step
    g.drafts.verified(n_ok, size_m)
    emit(slot)
