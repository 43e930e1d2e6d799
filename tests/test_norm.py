"""kernels/norm.py: RMSNorm against its float64 oracle (tests/oracles/ops.py).

Tolerance: a float64 sum, then three float32 roundings per element: rtol 1e-6. In-place
calls run another loop with the same arithmetic: equal.
"""

import numpy as np
from hypothesis import given, settings, strategies as st

from kernels.norm import rms_norm
from tests.oracles import ops as O
from tests.oracles.ops import f32_normal as _f32

SETTINGS = settings(deadline=None, max_examples=25)


@SETTINGS
@given(n_rows=st.integers(1, 9), n=st.sampled_from([1, 3, 64, 576, 2048]), seed=st.integers(0, 2**16))
def test_rms_norm(n_rows, n, seed):
    rng = np.random.default_rng(seed)
    x = _f32(rng, n_rows, n, scale=rng.uniform(0.01, 100))
    w = _f32(rng, n)
    out = np.empty_like(x)
    rms_norm(out, x, w, 1e-6)
    np.testing.assert_allclose(out, O.rms_norm(x, w, 1e-6), rtol=1e-6, atol=1e-30)
    rms_norm(x, x, w, 1e-6)  # in place
    np.testing.assert_array_equal(x, out)


def test_rms_norm_eps_dominates_zero_rows():
    x = np.zeros((2, 8), np.float32)
    out = np.ones_like(x)
    rms_norm(out, x, np.ones(8, np.float32), 1e-5)
    assert np.all(out == 0)
