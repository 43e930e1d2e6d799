"""The candidate set a sampler chain narrows, and the scratch buffers it lives in.

Everything sized n_vocab lives in a SamplerWorkspace; _Cands is a view of the current
candidates (ids, values, dense or not) inside it, with the operations the chain stages use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import sampling as K

_SORT_MAX = 1024  # sets cut to more tokens than this stay in vocabulary order


def _select_cap(n: int, k: int) -> int:
    return min(n, max(128, 3 * k))  # the buffer size between cuts: small keeps the threshold rising


class SamplerWorkspace:
    """Scratch arrays of n_vocab entries for Samplers used from one thread, one call at a time."""

    def __init__(self, n_vocab: int):
        if n_vocab <= 0:
            raise ValueError(f"n_vocab: must be > 0, got {n_vocab}")
        self.n_vocab = n_vocab
        self.ids = (np.zeros(n_vocab, np.int32), np.zeros(n_vocab, np.int32))
        self.vals = (np.zeros(n_vocab, np.float32), np.zeros(n_vocab, np.float32))
        self.probs = np.zeros(n_vocab, np.float32)
        self.buf_ids = np.zeros(n_vocab, np.int32)
        self.buf_vals = np.zeros(n_vocab, np.float32)
        self.tmp = np.zeros(n_vocab, np.float32)
        self.counts = np.zeros(n_vocab, np.int32)  # all zero between calls
        self.small_ids = np.zeros(min(n_vocab, 128), np.int32)
        self.small_vals = np.zeros(min(n_vocab, 128), np.float32)


class _Cands:
    """The candidate set while a chain runs: vals/ids views, size, dense (= whole vocabulary in order), sorted."""

    __slots__ = ("ws", "ids", "vals", "n", "dense", "sorted", "buf")

    def __init__(self, ws: SamplerWorkspace, src: np.ndarray):
        self.ws = ws
        self.ids = ws.ids[0]  # not read while dense
        self.vals = src  # the caller's logits until something writes: then a copy
        self.n = src.shape[0]
        self.dense = True
        self.sorted = False
        self.buf = -1  # workspace buffer holding vals; -1: the caller's array

    def own(self) -> None:
        """Make vals writable scratch (copy the caller's logits once)."""
        if self.buf < 0:
            dst = self.ws.vals[0]
            np.copyto(dst, self.vals)
            self.vals = dst
            self.buf = 0

    def out(self) -> np.ndarray:
        """Where an elementwise rewrite of vals goes (in place once owned); marks it owned."""
        if self.buf < 0:
            self.buf = 0
            return self.ws.vals[0]
        return self.vals

    def free(self) -> int:
        return 1 if self.buf == 0 else 0

    def take(self, b: int, n: int, sorted_: bool) -> None:
        self.ids, self.vals = self.ws.ids[b], self.ws.vals[b]
        self.n, self.dense, self.sorted, self.buf = n, False, sorted_, b

    def select(self, k: int, want_sorted: bool = True) -> None:
        """Keep the k largest, sorted descending (or in their order: cheaper for large k)."""
        ws, b = self.ws, self.free()
        kk = K.top_k_select(
            ws.ids[b], ws.vals[b], ws.buf_ids, ws.buf_vals, ws.tmp,
            self.ids, self.vals, self.dense, self.n, k, _select_cap(self.n, k), want_sorted,
        )
        self.take(b, kk, want_sorted)


@dataclass(frozen=True)
class TokenProbs:
    """A sampled token's probability and the n most likely tokens (descending), as llama-server reports them."""

    token: int
    prob: float
    top_ids: np.ndarray  # int32
    top_probs: np.ndarray  # float32
