"""kernels/cuda/activation.py: gated activations against the CPU twin, and the glue kernels against NumPy.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Shapes are small: the simulator runs each thread as a Python thread.
"""

import numpy as np
import pytest

from kernels import activation as cpu_act
from kernels.cuda import activation
from tests.oracles.cuda import dev, host

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("gelu", [False, True], ids=["swiglu", "geglu"])
def test_gated_activation_matches_cpu(gelu):
    gu = (RNG.standard_normal((2, 24)) * 4).astype(np.float32)
    want = np.empty((2, 12), np.float32)
    (cpu_act.geglu if gelu else cpu_act.swiglu)(want, gu[:, :12], gu[:, 12:])
    d, out = dev(gu), dev(np.zeros((2, 12), np.float32))
    (activation.geglu if gelu else activation.swiglu)(out, d[:, :12], d[:, 12:])
    np.testing.assert_allclose(host(out), want, rtol=1e-5, atol=1e-6)


def test_glue_kernels():
    a = RNG.standard_normal((3, 5)).astype(np.float32)
    v = RNG.standard_normal(5).astype(np.float32)
    d = dev(a)
    activation.add_bias(d, dev(v))
    np.testing.assert_allclose(host(d), a + v, rtol=1e-6, atol=1e-6)
    out = dev(np.zeros((3, 5), np.float32))
    activation.scale_cap(out, dev(a), 2.0, 1.5)
    np.testing.assert_allclose(host(out), 1.5 * np.tanh(a * 2 / 1.5), rtol=1e-5, atol=1e-6)
    rows = dev(np.zeros((2, 5), np.float32))
    activation.gather_rows(rows, dev(a), dev(np.array([2, 0], np.int64)))
    np.testing.assert_array_equal(host(rows), a[[2, 0]])
