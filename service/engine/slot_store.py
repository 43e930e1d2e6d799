"""Saving a slot's prompt cache to a file and reading it back (/slots/{id}?action=...).

A file holds the slot's cached tokens and their keys and values for every layer, as an
uncompressed .npz; restoring checks that it fits this model and slot. These run on the
engine thread (Engine.call), so no step is writing the cache meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class SlotStoreError(ValueError):
    """The client's mistake: a busy slot, or a file that is unreadable or does not fit."""


@dataclass(frozen=True)
class SlotFile:
    """What a save or restore did: the slot, its file, tokens and bytes moved, and how long it took."""

    id_slot: int
    filename: str
    n_tokens: int
    n_bytes: int
    ms: float


@dataclass(frozen=True)
class SlotErased:
    id_slot: int
    n_erased: int


def _idle_slot(engine, sid: int):
    slot = engine.slots[sid]
    if slot.busy:
        raise SlotStoreError(f"slot {sid} is busy")
    return slot


def save(engine, sid: int, path: Path) -> SlotFile:
    t0 = time.perf_counter()
    slot = _idle_slot(engine, sid)
    cache = engine.model.cache
    n = int(cache.length[sid])
    k, v = cache.read(sid, n)  # (n_layer, n_head_kv, n, head_dim), from the host or the device
    with open(path, "wb") as f:
        np.savez(f, tokens=np.asarray(slot.cache_tokens[:n], np.int32), k=k, v=v)
    return SlotFile(sid, path.name, n, path.stat().st_size, (time.perf_counter() - t0) * 1e3)


def restore(engine, sid: int, path: Path) -> SlotFile:
    t0 = time.perf_counter()
    slot = _idle_slot(engine, sid)
    cache = engine.model.cache
    try:  # anything a damaged file makes numpy or zipfile raise (BadZipFile, EOFError, zlib.error ...)
        with np.load(path, allow_pickle=False) as z:
            tokens, k, v = z["tokens"], z["k"], z["v"]
    except Exception as e:
        raise SlotStoreError(f"cannot read slot file {path.name}: {type(e).__name__}: {e}") from None
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu" or k.dtype.kind != "f" or v.dtype.kind != "f":
        raise SlotStoreError(f"slot file {path.name} is not a slot file: tokens {tokens.dtype}{list(tokens.shape)}, "
                             f"keys {k.dtype}, values {v.dtype}")
    n = len(tokens)
    want = (len(cache.k), cache.k[0].shape[1], n, cache.k[0].shape[3])
    if k.shape != want or v.shape != want or n > cache.n_ctx:
        raise SlotStoreError(f"slot file {path.name} does not fit this model and context "
                             f"(keys {k.shape}, expected {want} within n_ctx {cache.n_ctx})")
    if n and (tokens.min() < 0 or tokens.max() >= engine.model.cfg.n_vocab):
        raise SlotStoreError(f"slot file {path.name} holds token ids outside the vocabulary")
    cache.write(sid, k, v)
    slot.cache_tokens = tokens.tolist()
    return SlotFile(sid, path.name, n, path.stat().st_size, (time.perf_counter() - t0) * 1e3)


def erase(engine, sid: int) -> SlotErased:
    slot = _idle_slot(engine, sid)
    n = len(slot.cache_tokens)
    engine.model.cache.clear(sid)
    slot.cache_tokens = []
    return SlotErased(sid, n)
