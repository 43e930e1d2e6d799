"""kernels.matmul (pack, Activations, matmul) against the oracle dequantize(W) @ x, for every type.

The error bound, and why it holds, is tests/oracles/matmul.py's: the int8 activations cost at
most 0.025 ||w_i|| ||x_t|| per output, float weights 1e-5 of the same scale. The kernels under
matmul() have their own tests: test_qmatmul.py, test_packing.py, test_unpack.py, test_simd.py.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels.matmul import Activations, matmul, pack
from tests.oracles.matmul import check_matmul
from tests.oracles.quant_blocks import FLOATS, QUANTIZED, random_matrix

ALL = FLOATS + QUANTIZED


@pytest.mark.parametrize("qtype", ALL, ids=lambda t: t.name)
@pytest.mark.parametrize("n_tokens", [1, 3, 4, 9])
def test_matmul_matches_dequantized_oracle(qtype, n_tokens):
    rng = np.random.default_rng(int(qtype) * 100 + n_tokens)
    n, k = 45, 512  # 45 rows: two full 16-row groups and a ragged one
    data = random_matrix(qtype, n, k, rng)
    x = rng.standard_normal((n_tokens, k)).astype(np.float32)
    y = matmul(np.full((n_tokens, n), np.nan, np.float32), x, pack(data, qtype, n, k))
    check_matmul(y, data, qtype, x)


@settings(max_examples=25, deadline=None)
@given(
    qtype=st.sampled_from(ALL),
    n=st.integers(1, 70),
    blocks=st.integers(1, 3),
    n_tokens=st.integers(1, 13),
    seed=st.integers(0, 2**31),
)
def test_matmul_shapes(qtype, n, blocks, n_tokens, seed):
    rng = np.random.default_rng(seed)
    k = 256 * blocks
    data = random_matrix(qtype, n, k, rng)
    x = rng.standard_normal((n_tokens, k)).astype(np.float32)
    act = Activations(n_tokens + 2, k).set(x)  # a buffer larger than needed is fine
    y = matmul(np.zeros((n_tokens, n), np.float32), act, pack(data, qtype, n, k))
    check_matmul(y, data, qtype, x)


def test_zero_activations_give_zero():
    rng = np.random.default_rng(1)
    data = random_matrix(QUANTIZED[0], 16, 64, rng)
    y = matmul(np.ones((2, 16), np.float32), np.zeros((2, 64), np.float32), pack(data, QUANTIZED[0], 16, 64))
    assert not y.any()


def test_shape_errors():
    rng = np.random.default_rng(2)
    qt = QUANTIZED[0]
    w = pack(random_matrix(qt, 16, 64, rng), qt, 16, 64)
    with pytest.raises(ValueError):
        matmul(np.zeros((1, 15), np.float32), np.zeros((1, 64), np.float32), w)
    with pytest.raises(ValueError):
        pack(random_matrix(qt, 16, 64, rng)[:, :-1], qt, 16, 64)
    with pytest.raises(ValueError):
        Activations(4, 48)
