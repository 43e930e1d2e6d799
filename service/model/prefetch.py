"""What a server start does before its HTTP stack is up: service.cli calls prefetch() first thing.

Why: a start ran strictly in turn: imports of the HTTP stack, then the model (GGUF, tokenizer,
packed weights), then the chat template worker's start, then the kernel warm-up. The weight
packing is NumPy work that mostly releases the GIL (0.6 CPU-s for SmolLM2), and the template
worker is a process of its own, so both can run while the main thread imports and builds the
app. prefetch() starts the worker, reads the GGUF, and packs the weights on a thread; Model()
on the main thread takes them (waiting if need be) when its arguments match, and loads as
before otherwise. Measured on 2 cores, SmolLM2, warm Numba cache: ready in 1.99 s instead of
2.28 s (median of 7); the packing then takes 0.96 s instead of 0.35 s, sharing the cores.

Only CPU weights are prepared here: offloaded matrices are uploaded by the thread that selected
the device (service.model.placement), so with a usable device the weights load in Model() as
before. A failure here is not reported: Model() then loads everything itself and raises the
same error, in the same order, as without a prefetch.

The tokenizer stays in Model(), on the main thread: it holds the GIL (0.12 s), so on the thread
it only traded places with the imports (measured: 2.00 s against 1.99 s).
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.gguf_reader import GGUFFile
    from service.model.weights import Weights


@dataclass
class Prepared:
    file: GGUFFile  # the weights are views of its map; Model() uses them only with this same file
    weights: Weights | None  # None: a device may take some layers, Model() loads them


_lock = threading.Lock()
_pending: tuple[tuple, Future, GGUFFile] | None = None  # (arguments, result, file) of the prefetch under way


def _key(path: str | Path, n_gpu_layers: str, device: str | None) -> tuple:
    return os.path.abspath(path), str(n_gpu_layers), device


def prefetch(path: str | Path, n_gpu_layers: str = "auto", device: str | None = None) -> None:
    """Start the chat template worker and begin loading `path`, for Model(path, ...,
    n_gpu_layers=n_gpu_layers, device=device) to pick up.

    Bytecode: our modules get their .pyc even under PYTHONDONTWRITEBYTECODE, as the Dockerfile
    compiles the installed package at build time; a checkout without them compiled 109 modules
    at every start (0.19 s; ready in 2.16 s against 1.99 s, measured). Every module the thread
    uses is imported here, on the caller's thread: two threads importing one package at once
    can deadlock on the import locks (a package __init__ importing its submodules)."""
    global _pending
    sys.dont_write_bytecode = False  # before the imports below, which are most of ours
    from kernels.cuda import launch  # noqa: F401 (for _prepare, see above)
    from service.chat.worker import shared_worker
    from service.gguf_reader import read_gguf
    from service.model import config, weights  # noqa: F401 (for _prepare)

    shared_worker.start()
    path = str(path)
    fut: Future = Future()
    try:  # parsed once (0.07 s): held here, so the thread and Model() get this same file
        f = read_gguf(path)
    except Exception:  # noqa: BLE001 (Model() reads it again and reports the error)
        return
    with _lock:
        _pending = (_key(path, n_gpu_layers, device), fut, f)
    threading.Thread(target=_prepare, args=(fut, f), name="prefetch", daemon=True).start()


def take(path: str | Path, n_gpu_layers: str, device: str | None) -> Future | None:
    """The prefetch under way for these arguments, or None; each prefetch is taken once (a
    mismatch drops it). Not waited for: wait() gives its result."""
    global _pending
    with _lock:
        pending, _pending = _pending, None
    return pending[1] if pending is not None and pending[0] == _key(path, n_gpu_layers, device) else None


def wait(fut: Future | None) -> Prepared | None:
    """The prefetched parts (waiting until they are ready); None when nothing was prefetched or
    the prefetch failed."""
    if fut is None:
        return None
    try:
        return fut.result()
    except Exception:  # noqa: BLE001 (Model() repeats the load and raises the error itself)
        return None


def _prepare(fut: Future, f: GGUFFile) -> None:
    from kernels.cuda import launch
    from service.model.config import config_from_metadata
    from service.model.weights import load_weights

    try:
        cfg = config_from_metadata(f.metadata, str(f.path))
        tokens = f.metadata.get("tokenizer.ggml.tokens")
        weights = None
        if tokens is not None and len(tokens) == cfg.n_vocab and not launch.usable():
            weights = load_weights(f, cfg)  # no device: place() puts every layer on the CPU
        fut.set_result(Prepared(f, weights))
    except BaseException as e:  # noqa: BLE001 (handed to take(), which falls back to a plain load)
        fut.set_exception(e)
