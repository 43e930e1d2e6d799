"""kernels/sampling_mask.py: a grammar's allowed-token bitmask (llguidance's: token t at bit t & 31
of word t >> 5) as a sparse candidate set, a count and a dense -inf mask, against NumPy's unpacked bits."""

import numpy as np
import pytest

from kernels import sampling_mask as M


@pytest.mark.parametrize("n", [1, 31, 32, 33, 100, 4097])
def test_mask_kernels_against_numpy(n):
    rng = np.random.default_rng(n)
    vals = rng.standard_normal(n).astype(np.float32)
    for density in (0.0, 0.05, 0.5, 1.0):
        bits = rng.random(((n + 31) // 32) * 32) < density
        bits[n:] = rng.random(bits.size - n) < 0.5  # bits past n must be ignored
        mask = np.packbits(bits, bitorder="little").view(np.int32)
        ref = np.flatnonzero(bits[:n])
        assert M.count_allowed(mask, n) == ref.size
        ids, out = np.zeros(n, np.int32), np.zeros(n, np.float32)
        cnt = M.gather_allowed(ids, out, vals, mask, n)
        np.testing.assert_array_equal(ids[:cnt], ref)
        np.testing.assert_array_equal(out[:cnt], vals[ref])
        dense = np.empty(n, np.float32)
        M.mask_dense(dense, vals, mask, n)
        np.testing.assert_array_equal(dense, np.where(bits[:n], vals, -np.inf).astype(np.float32))
