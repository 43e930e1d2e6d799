"""DRY's sequence breakers: from strings to token-id sequences (any tokenizer), and the lookup tables the DRY kernels read."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

_FLOAT_MAX_LOG = 88.7228391  # log(FLT_MAX): caps DRY's exponent as llama.cpp does


def dry_breaker_sequences(
    breakers: Sequence[str],
    pieces: Sequence[str],
    tokenize: Callable[[str], list[int]],
    *,
    max_chars: int = 40,
    max_tail_len: int = 20,
) -> list[list[int]]:
    """DRY's sequence breakers as token-id sequences, found the way llama.cpp does, for any tokenizer.

    pieces[t] is token t's text; tokenize(text) encodes text without special tokens.
    A token whose text contains a breaker is a breaker by itself ([t]). A token whose text
    ends with the start of a breaker is the head of a sequence: [t] + the tokens of the rest
    of the breaker (at most max_tail_len of them). Breakers are cut to max_chars characters.
    This scans the whole vocabulary per breaker: cache the result per breakers tuple.
    """
    out: set[tuple[int, ...]] = set()
    tails: dict[str, tuple[int, ...]] = {}
    for brk in breakers:
        brk = brk[:max_chars]
        if not brk:
            continue
        first = brk[0]
        for tid, word in enumerate(pieces):
            if first not in word:
                continue
            if brk in word:
                out.add((tid,))
                continue
            pos = word.find(first)
            while pos != -1:
                rest = word[pos:]
                if brk.startswith(rest):
                    remainder = brk[len(rest) :]
                    if remainder not in tails:
                        tails[remainder] = tuple(tokenize(remainder))[:max_tail_len]
                    out.add((tid, *tails[remainder]))
                pos = word.find(first, pos + 1)
    return [list(s) for s in sorted(out)]


class DryTables:
    """Breaker sequences laid out for kernels/sampling_dry.py, and the exponent cap for dry_base.

    Sequences are grouped by their first token: start[t]:start[t+1] indexes the sequences
    whose head is t (start has n_vocab + 1 entries, or 2 when DRY is off and the tables are
    never read); length[i] is sequence i's tail length, its tail is tails[offset[i]:][:length[i]].
    """

    def __init__(self, breakers: Sequence[Sequence[int]] | None, n_vocab: int, dry_base: float, enabled: bool):
        seqs = sorted({tuple(int(t) for t in b) for b in (breakers or ()) if len(b) > 0}) if enabled else []
        for s in seqs:
            if min(s) < 0 or max(s) >= n_vocab:
                raise ValueError(f"dry_breakers: token ids outside [0, {n_vocab}) in {list(s)}")
        self.start = np.zeros(n_vocab + 1 if enabled else 2, np.int32)
        if seqs:
            heads = np.array([s[0] for s in seqs], np.int64)
            np.cumsum(np.bincount(heads, minlength=n_vocab), out=self.start[1:])
        self.length = np.array([len(s) - 1 for s in seqs] or [0], np.int32)
        self.offset = np.zeros(max(1, len(seqs)), np.int32)
        if seqs:
            self.offset[1:] = np.cumsum(self.length)[:-1]
        self.tails = np.array([t for s in seqs for t in s[1:]] or [0], np.int32)
        self.max_exp = int(_FLOAT_MAX_LOG / math.log(dry_base)) if dry_base > 1.000001 else 0
