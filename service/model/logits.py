"""Logits as the forward pass returns them: one interface wherever they live.

The head runs on the CPU (HostLogits, here) or on the GPU (offload.DeviceLogits, which stay
on the device so that a sampler can bring back k values instead of n_vocab). Both give:

  len(logits), logits.shape   (n_wanted, n_vocab): the rows of the tokens marked in Batch.want
  logits.row(i)               float32 (n_vocab,) on the host
  logits.host()               float32 (n_wanted, n_vocab) on the host: every row
  logits.max_k                the largest k that top_k() serves; 0: none, read row() instead
  logits.top_k(i, k)          (ids int32 (k,), values float32 (k,)): row i's k largest,
                              descending, ties by the lower id; only for 0 < k <= max_k

Why max_k = 0 on the host: the row is already in memory, and the sampler's own chain reads it
as fast as a separate top-k would; the choice is made once, by the caller, from max_k alone.
Device logits are valid until the next forward pass reuses their buffer.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Logits(Protocol):
    shape: tuple[int, int]
    max_k: int

    def __len__(self) -> int: ...

    def row(self, i: int) -> np.ndarray: ...

    def host(self) -> np.ndarray: ...

    def top_k(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class HostLogits:
    """Logits already in host memory: a float32 (n_wanted, n_vocab) array."""

    max_k = 0

    def __init__(self, a: np.ndarray):
        self.a = a
        self.shape = a.shape

    def __len__(self) -> int:
        return self.shape[0]

    def row(self, i: int) -> np.ndarray:
        return self.a[i]

    def host(self) -> np.ndarray:
        return self.a

    def top_k(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise ValueError("host logits serve no top_k (max_k = 0): read row()")


class LazyHostLogits(HostLogits):
    """Host logits whose rows are computed when first asked for, CHUNK rows at a time: speculative
    verification reads a drafted run's rows in order and stops at the first rejected draft token, so
    the output head (a fifth of a SmolLM2 token's work) runs only for the rows it reads.
    head(r0, r1) returns the (r1 - r0, n_vocab) logits of rows r0 .. r1 - 1."""

    CHUNK = 8

    def __init__(self, head, n: int, n_vocab: int):
        super().__init__(np.empty((n, n_vocab), np.float32))
        self.head = head
        self.done = np.zeros((n + self.CHUNK - 1) // self.CHUNK, bool)  # which chunks hold their logits

    def row(self, i: int) -> np.ndarray:
        c = i // self.CHUNK
        if not self.done[c]:
            r0, r1 = c * self.CHUNK, min((c + 1) * self.CHUNK, self.shape[0])
            self.a[r0:r1] = self.head(r0, r1)
            self.done[c] = True
        return self.a[i]

    def host(self) -> np.ndarray:
        for c in range(len(self.done)):
            self.row(c * self.CHUNK)
        return self.a
