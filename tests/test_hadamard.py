"""kernels/hadamard.py: llama.cpp's rotation of block-type KV caches: when it applies, and the
transform against ggml_gen_hadamard's matrix (built its way here)."""

import numpy as np
import pytest

from kernels import kv_types as kt
from kernels.hadamard import fwht_rows, rot_sizes


def ggml_hadamard(n: int) -> np.ndarray:
    """ggml_gen_hadamard: h[0, 0] = 1 / sqrtf(n), then Sylvester doubling; h @ h = I."""
    h = np.zeros((n, n), np.float32)
    h[0, 0] = 1 / np.sqrt(np.float32(n))
    s = 1
    while s < n:
        for i in range(s):
            for j in range(s):
                h[i + s, j] = h[i, j + s] = h[i, j]
                h[i + s, j + s] = -h[i, j]
        s *= 2
    return h


def test_which_caches_rotate_and_by_what():
    """Keys: the largest power of two dividing head_dim (llama.cpp's build_input_k_rot), values 64;
    only block types, only when head_dim % 64 == 0."""
    assert rot_sizes(kt.Q8_0, kt.Q8_0, 64) == (64, 64)
    assert rot_sizes(kt.Q4_0, kt.IQ4_NL, 256) == (256, 64)
    assert rot_sizes(kt.Q5_1, kt.F16, 192) == (64, 0)
    assert rot_sizes(kt.F16, kt.Q4_1, 128) == (0, 64)
    assert rot_sizes(kt.Q8_0, kt.Q8_0, 96) == (0, 0) and rot_sizes(kt.BF16, kt.F32, 256) == (0, 0)


@pytest.mark.parametrize("n", [64, 128, 256])
def test_rows_turn_by_the_matrix_chunk_by_chunk(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    y = x.copy()
    fwht_rows(y, n)
    h = ggml_hadamard(n)
    np.testing.assert_allclose(y, (x.reshape(-1, n) @ h.T).reshape(x.shape), rtol=0, atol=2e-6)
    fwht_rows(y, n)  # H H = I: twice is the identity
    np.testing.assert_allclose(y, x, rtol=0, atol=4e-6)
    a = y[:2].copy()  # strided rows (the values sit inside the fused QKV rows)
    wide = np.zeros((2, 512), np.float32)
    wide[:, 100:356] = a
    fwht_rows(wide[:, 100:356], n)
    fwht_rows(a, n)
    np.testing.assert_array_equal(wide[:, 100:356], a)
    assert not wide[:, :100].any() and not wide[:, 356:].any()
