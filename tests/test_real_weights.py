"""Kernels on the real models' tensors: every quantized type the two reference GGUF files
hold (Q4_1, Q8_0, Q5_0, Q4_K, Q6_K), packed and multiplied, and dequantized bit for bit."""

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize as gguf_dequantize

from kernels.dequant import dequantize
from kernels.matmul import matmul, pack
from tests.oracles.matmul import check_matmul

MODELS = Path(__file__).resolve().parent.parent / "models"
FILES = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]
MAX_ROWS = 1024  # the embedding matrices have 49k and 262k rows; a slice is enough


@lru_cache(maxsize=None)
def _reader(path: Path) -> GGUFReader:
    return GGUFReader(path)  # seconds for the 262k-token vocabulary: read each file once


def _tensors():
    for name in FILES:
        path = MODELS / name
        if not path.exists():
            pytest.fail(f"{path} missing: run `make models`")
        seen = set()
        for t in _reader(path).tensors:
            if len(t.shape) == 2 and t.tensor_type.name not in seen and t.tensor_type.name != "F32":
                seen.add(t.tensor_type.name)
                yield pytest.param(path, t.name, id=f"{name.split('-')[0]}:{t.tensor_type.name}:{t.name}")


@pytest.mark.parametrize("path,tensor", list(_tensors()))
def test_real_tensor(path, tensor):
    (t,) = [t for t in _reader(path).tensors if t.name == tensor]
    data = np.asarray(t.data[:MAX_ROWS])
    n, k = data.shape[0], int(t.shape[0])
    assert np.array_equal(dequantize(data, t.tensor_type).view(np.uint32),
                          gguf_dequantize(data, t.tensor_type).view(np.uint32))
    x = np.random.default_rng(0).standard_normal((5, k)).astype(np.float32)
    y = matmul(np.zeros((5, n), np.float32), x, pack(data, t.tensor_type, n, k))
    check_matmul(y, data, t.tensor_type, x)
