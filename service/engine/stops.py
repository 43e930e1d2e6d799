"""Stop strings: where generation must end, and how much text a stream must hold back.

llama-server semantics: a stop string ends generation as soon as it appears in the
generated text; the text from the stop string on is dropped. While the tail of the text
could still become a stop string, that tail is not streamed yet.
"""

from __future__ import annotations


def find_stop(text: str, stops: tuple[str, ...], new_from: int) -> tuple[int, str] | None:
    """The earliest stop string that ends in text[new_from:], as (position, word); None if none.

    Only occurrences overlapping the newly added text are searched: older text was already
    searched when it was new."""
    best: tuple[int, str] | None = None
    for word in stops:
        if not word:
            continue
        start = max(0, new_from - len(word) + 1)
        pos = text.find(word, start)
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, word)
    return best


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of text that is a proper prefix of some stop string."""
    keep = 0
    for word in stops:
        for n in range(min(len(word) - 1, len(text)), keep, -1):
            if text.endswith(word[:n]):
                keep = n
                break
    return keep
