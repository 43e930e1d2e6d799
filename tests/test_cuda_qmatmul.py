"""kernels/cuda/qmatmul.py: the decode (GEMV) and prefill (GEMM) matmuls against NumPy and the CPU kernel.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Shapes are small: the simulator runs each thread as a Python thread.
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from kernels.cuda import launch
from kernels.cuda.packing import upload
from kernels.cuda.qmatmul import matmul
from kernels.matmul import matmul as cpu_matmul
from kernels.matmul import pack
from tests.oracles.cuda import dev, host
from tests.oracles.matmul import check_matmul
from tests.oracles.quant_blocks import IQ_TYPES
from tests.test_cuda_packing import TYPES, _weights


# The grid, ternary and MXFP4 types use the same code-word layouts as the types above (nibbles
# for TQ*, bytes for the rest): one decode and one prefill case each.
CASES = [(qt, n_tok) for qt in TYPES for n_tok in (1, 3, launch.GEMV_MAX_TOKENS + 2)]
CASES += [(qt, n_tok) for qt in IQ_TYPES for n_tok in (1, launch.GEMV_MAX_TOKENS + 2)]


@pytest.mark.parametrize(("qt", "n_tok"), CASES, ids=lambda v: v.name if isinstance(v, T) else f"tok{v}")
def test_matmul_matches_numpy_and_the_cpu_kernel(qt, n_tok):
    # Inputs per case, not from a module-wide stream: the CPU comparison's 2% is a rule of
    # thumb (see check_matmul for the proven bound), so a case must not depend on what ran before.
    rng = np.random.default_rng(int(qt) * 10 + n_tok)
    k = max(64, GGML_QUANT_SIZES[qt][0])
    n = 5  # not a multiple of the rows per block or the tile
    raw, wd = _weights(qt, n, k, rng)
    x = rng.standard_normal((n_tok, k)).astype(np.float32)
    y = dev(np.full((n_tok, n), np.nan, np.float32))
    matmul(y, dev(x), upload(raw, qt, n, k))
    got = host(y)
    want = x.astype(np.float64) @ wd.T.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    cpu = np.zeros((n_tok, n), np.float32)
    cpu_matmul(cpu, x, pack(raw, qt, n, k))  # the CPU twin quantizes x to int8: looser
    check_matmul(cpu, raw, qt, x)
    if qt in TYPES:  # the rule of thumb; for random grid blocks the CPU's int8 error reached 2.2%
        np.testing.assert_allclose(got, cpu, rtol=0, atol=0.02 * np.abs(want).max())  # (IQ3_XXS, k=256)


def test_matmul_writes_a_column_slice_of_a_fused_output():
    rng = np.random.default_rng(7)
    raw, wd = _weights(T.Q4_0, 4, 64, rng)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    y = dev(np.zeros((2, 10), np.float32))
    matmul(y[:, 3:7], dev(x), upload(raw, T.Q4_0, 4, 64))
    got = host(y)
    np.testing.assert_allclose(got[:, 3:7], x @ wd.T, rtol=1e-4, atol=1e-4)
    assert not got[:, :3].any() and not got[:, 7:].any()
