"""kernels/kv_dequant.py: a chunk of cache rows read back as float32 into the caller's buffer,
against the exact dequantization (gguf's values) of each cache type; fast math allows an FMA's
rounding."""

import numpy as np
import pytest

from kernels import kv_types as kt
from kernels.kv_dequant import CHUNK, cache_ref, kv_rows
from kernels.kv_quant import dequantize_rows, quantize_rows


@pytest.mark.parametrize("name", list(kt.NAMES))
def test_rows_of_every_type(name):
    t = kt.NAMES[name]
    rng = np.random.default_rng(len(name))
    x = (rng.standard_normal((2, 40, 96)) * 10.0 ** rng.uniform(-2, 2, (2, 40, 1))).astype(np.float32)
    rows = quantize_rows(x, t)
    want = dequantize_rows(rows, t)
    buf = np.full(CHUNK * 96, np.nan, np.float32)
    for g, j0, j1 in ((0, 0, 16), (1, 13, 29), (1, 39, 40), (0, 7, 7)):
        got = kv_rows(buf, cache_ref(t, rows), g, j0, j1, 96)
        assert got.shape == (j1 - j0, 96) and got.flags.c_contiguous and (j0 == j1 or np.shares_memory(got, buf))
        np.testing.assert_allclose(got, want[g, j0:j1], rtol=1e-6, atol=1e-30)
