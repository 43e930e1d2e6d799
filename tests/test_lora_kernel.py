"""kernels.lora against its NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.lora import lora_add, lora_add_reference


@pytest.mark.parametrize("n_tok,n_ad,r,k,n", [(1, 1, 8, 64, 96), (7, 3, 16, 128, 40), (33, 2, 4, 32, 257),
                                              (5, 0, 0, 64, 64)])
def test_matches_the_oracle(n_tok, n_ad, r, k, n):
    rng = np.random.default_rng(n_tok * 100 + n_ad)
    x = rng.standard_normal((n_tok, k), np.float32)
    a = rng.standard_normal((n_ad, r, k), np.float32)
    b = rng.standard_normal((n_ad, n, r), np.float32)
    scale = rng.choice(np.array([0.0, 0.5, 1.0, -2.0], np.float32), (n_tok, n_ad))
    base = rng.standard_normal((n_tok, n), np.float32)
    out = base.copy()
    lora_add(out, x, a, b, scale, np.zeros((n_tok, max(r, 1)), np.float32))
    want = lora_add_reference(base.copy(), x, a, b, scale)
    np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-4 * np.sqrt(k * max(r, 1)))
    if n_ad:
        zero = np.zeros_like(scale)  # every scale 0: the output is untouched
        out = base.copy()
        lora_add(out, x, a, b, zero, np.zeros((n_tok, r), np.float32))
        assert np.array_equal(out, base)
