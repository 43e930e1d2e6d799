"""Saving a slot's prompt cache to a file and reading it back (/slots/{id}?action=...).

A file holds the slot's cached tokens and their keys and values for every layer as the cache
stores them, with the cache types' names (type_k, type_v: -ctk / -ctv), as an uncompressed
.npz; a file without them (written before the cache had types) holds float32 rows. Restoring
checks that it fits this model and slot; rows of other types than the server's are converted
(through float32, exactly: to f32, or to the type they already have, nothing is lost; to a
coarser type they are rounded as the server would have stored them). These run on the engine
thread (Engine.call), so no step is writing the cache meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from kernels import kv_types as kt
from service.model.kvcache import convert

log = structlog.get_logger("llamajit.engine")


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
    k, v = cache.read(sid, n)  # (n_layer, n_head_kv, n, width) as stored, from the host or the device
    with open(path, "wb") as f:
        np.savez(f, tokens=np.asarray(slot.cache_tokens[:n], np.int32), k=k, v=v, type_k=cache.type_names[0],
                 type_v=cache.type_names[1])
    return SlotFile(sid, path.name, n, path.stat().st_size, (time.perf_counter() - t0) * 1e3)


def restore(engine, sid: int, path: Path) -> SlotFile:
    t0 = time.perf_counter()
    slot = _idle_slot(engine, sid)
    cache = engine.model.cache
    try:  # anything a damaged file makes numpy or zipfile raise (BadZipFile, EOFError, zlib.error ...)
        with np.load(path, allow_pickle=False) as z:
            tokens, k, v = z["tokens"], z["k"], z["v"]
            names = [str(z[f]) if f in z.files else "f32" for f in ("type_k", "type_v")]
        types = [kt.type_id(name) for name in names]
    except Exception as e:
        raise SlotStoreError(f"cannot read slot file {path.name}: {type(e).__name__}: {e}") from None
    if (tokens.ndim != 1 or tokens.dtype.kind not in "iu" or k.dtype != kt.storage_dtype(types[0])
            or v.dtype != kt.storage_dtype(types[1])):
        raise SlotStoreError(f"slot file {path.name} is not a slot file: tokens {tokens.dtype}{list(tokens.shape)}, "
                             f"keys {k.dtype} ({names[0]}), values {v.dtype} ({names[1]})")
    n = len(tokens)
    hd = engine.model.cfg.head_dim
    for rows, t, name in ((k, types[0], names[0]), (v, types[1], names[1])):
        width = -1 if kt.head_dim_error(t, hd, "K") else kt.row_width(t, hd)  # -1: the type cannot hold a head
        want = (len(cache.k), cache.cfg.n_head_kv, n, width)
        if rows.shape != want or n > cache.n_ctx:
            raise SlotStoreError(f"slot file {path.name} does not fit this model and context "
                                 f"({name} rows {rows.shape}, expected {want} within n_ctx {cache.n_ctx})")
    if n and (tokens.min() < 0 or tokens.max() >= engine.model.cfg.n_vocab):
        raise SlotStoreError(f"slot file {path.name} holds token ids outside the vocabulary")
    if (types[0], types[1]) != (cache.type_k, cache.type_v):
        log.info("slot file converted to the cache types", file=path.name, file_types=names,
                 cache_types=list(cache.type_names))
        k, v = convert(k, types[0], cache.type_k, hd, False), convert(v, types[1], cache.type_v, hd, True)
    cache.write(sid, k, v)
    slot.cache_tokens = tokens.tolist()
    return SlotFile(sid, path.name, n, path.stat().st_size, (time.perf_counter() - t0) * 1e3)


def erase(engine, sid: int) -> SlotErased:
    slot = _idle_slot(engine, sid)
    n = len(slot.cache_tokens)
    engine.model.cache.clear(sid)
    slot.cache_tokens = []
    return SlotErased(sid, n)
