"""all-MiniLM-L6-v2 (`make models` converts it) and llama.cpp's recorded side of it
(tests/fixtures/record_minilm.py), shared by the encoder's tests."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MINILM = ROOT / "models" / "all-MiniLM-L6-v2.F16.gguf"
FIXTURE = Path(__file__).with_name("fixtures") / "minilm_llamacpp.json"


def model_path() -> Path:
    if not MINILM.exists():
        pytest.skip(f"{MINILM} not present (make models)")
    return MINILM


@lru_cache(maxsize=1)
def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def rows(*groups: str) -> list[dict]:
    """The recorded rows (text, tokens, embedding) of the named groups: texts, queries, docs."""
    return [r for g in groups for r in fixture()[g]]


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def nearest(queries: np.ndarray, docs: np.ndarray) -> list[list[int]]:
    """Each query's documents, most similar first (vectors are unit length: the dot is the cosine)."""
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable").tolist()


def describe(path: Path) -> dict:
    """Tensors (type, shape, sha256 of the bytes) and non-general metadata (value_digest), read with
    our own GGUF reader: gguf-py's reader takes 9 s over the 30k-token arrays, this 0.5 s."""
    from service.gguf_reader import read_gguf

    f = read_gguf(path)
    tensors = {n: [t.qtype.name, [int(x) for x in t.shape], hashlib.sha256(f.data(n).tobytes()).hexdigest()]
               for n, t in f.tensors.items()}
    meta = {k: value_digest(v) for k, v in f.metadata.items() if not k.startswith("general.")}
    return {"tensors": tensors, "metadata": meta}


def value_digest(v) -> str:
    """sha256 of a metadata value with its type (an array's element type included)."""
    kind = f"{type(v).__name__}:{getattr(v, 'dtype', '')}"
    v = v.tolist() if hasattr(v, "tolist") else v
    return hashlib.sha256((kind + json.dumps(v, ensure_ascii=False)).encode()).hexdigest()
