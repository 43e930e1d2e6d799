"""The tokens of a sequence that the penalties and DRY can see: a sliding window over its history."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class TokenHistory:
    """The last `cap` accepted tokens (prompt and generated), oldest first.

    Stored in a buffer of 2 * cap so that appending is O(1) and the window is one contiguous
    slice: when the buffer fills, its last cap tokens move to the front (once per cap tokens).
    """

    def __init__(self, cap: int, n_vocab: int):
        self.cap = max(1, cap)
        self.n_vocab = n_vocab
        self._buf = np.zeros(2 * self.cap, np.int32)
        self._len = 0

    def append(self, token: int) -> None:
        t = int(token)
        if not 0 <= t < self.n_vocab:
            raise ValueError(f"token {t} outside [0, {self.n_vocab})")
        if self._len == self._buf.shape[0]:
            cap = self.cap
            self._buf[:cap] = self._buf[self._len - cap : self._len]
            self._len = cap
        self._buf[self._len] = t
        self._len += 1

    def extend(self, tokens: Iterable[int]) -> None:
        toks = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens, np.int64).ravel()
        if toks.size and (toks.min() < 0 or toks.max() >= self.n_vocab):
            raise ValueError(f"tokens outside [0, {self.n_vocab})")
        for t in toks[-self.cap :]:  # older ones would fall out of the window anyway
            self.append(int(t))

    def clear(self) -> None:
        self._len = 0

    def window(self, n: int) -> np.ndarray:
        """The last n tokens (fewer while the history is shorter): a view, valid until the next append."""
        return self._buf[max(0, self._len - n) : self._len]

    def tokens(self) -> np.ndarray:
        """Every token still in the window (at most cap), oldest first: a copy."""
        return self.window(self.cap).copy()
