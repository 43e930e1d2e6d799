"""DRY's sequence breakers (strings) as token-id sequences, for any tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Sequence


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
