"""The two real models' metadata and tokenizers, read once per test session."""

from functools import lru_cache
from pathlib import Path

import pytest

from service.gguf_reader import read_gguf
from service.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}


@lru_cache(maxsize=None)
def meta(name: str) -> dict:
    path = ROOT / "models" / MODELS[name]
    if not path.exists():
        pytest.skip(f"{path} not present (make models)")
    return read_gguf(path).metadata


@lru_cache(maxsize=None)
def tok(name: str) -> Tokenizer:
    return Tokenizer.from_metadata(meta(name))
