"""kernels/cuda/hadamard.py: the rotation of block-type KV caches on the device against the CPU's
(kernels.hadamard). Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU, on the device with one.
(Its use inside the heads kernel: tests/test_cuda_heads.py.)"""

import numpy as np
import pytest

from kernels.cuda.hadamard import hadamard
from kernels.hadamard import fwht_rows
from tests.oracles.cuda import dev, host


@pytest.mark.parametrize("n", [64, 128, 256])
def test_rows_match_the_cpu(n):
    x = np.random.default_rng(n).standard_normal((3, 256)).astype(np.float32)
    want = x.copy()
    fwht_rows(want, n)
    d = dev(x)
    hadamard(d, n)
    np.testing.assert_allclose(host(d), want, rtol=1e-6, atol=1e-6)
