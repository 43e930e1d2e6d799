"""kernels/cuda/norm.py: RMSNorm and the residual junction (add, post-norm, next norm) against the CPU twin.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Shapes are small: the simulator runs each thread as a Python thread.
"""

import numpy as np
import pytest

from kernels.cuda.norm import residual, rms_norm
from kernels.norm import rms_norm as cpu_rms_norm
from tests.oracles.cuda import dev, host

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("rows,n", [(3, 40), (4, 8)])
def test_rms_norm_matches_cpu(rows, n):
    x = RNG.standard_normal((rows, n)).astype(np.float32) * 3
    w = RNG.standard_normal(n).astype(np.float32)
    want = np.empty_like(x)
    cpu_rms_norm(want, x, w, 1e-6)
    d = dev(x)
    rms_norm(d, d, dev(w), 1e-6)  # in place, as the Q/K norms run
    np.testing.assert_allclose(host(d), want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("post,nxt", [(False, True), (True, True), (True, False)], ids=["add-norm", "post-add-norm",
                                                                                    "post-add"])
def test_residual_junction_matches_cpu(post, nxt):
    x = RNG.standard_normal((3, 40)).astype(np.float32)
    h = RNG.standard_normal((3, 40)).astype(np.float32) * 5
    w_post, w_next = (RNG.standard_normal(40).astype(np.float32) for _ in range(2))
    want_h = h.copy()
    if post:
        cpu_rms_norm(want_h, h, w_post, 1e-6)
    want_x = x + want_h
    want_out = np.empty_like(x)
    cpu_rms_norm(want_out, want_x, w_next, 1e-6)
    dx, dh = dev(x), dev(h)
    none = dev(np.zeros(0, np.float32))
    residual(dh, dx, dh, dev(w_post) if post else none, dev(w_next) if nxt else none, 1e-6)  # out aliases h
    np.testing.assert_allclose(host(dx), want_x, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(host(dh), want_out if nxt else h, rtol=2e-6, atol=2e-6)
