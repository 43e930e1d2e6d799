"""kernels/cuda/dequant_k.py, kernel by kernel, bit for bit against gguf.quants.dequantize.

Each super-block kernel is launched directly (one thread per weight, as kernels.cuda.dequant
launches it) on sane blocks, random bytes (NaN, inf and subnormal scales too) and extreme
halves. Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device
with one; the simulator runs a Python thread per weight, so two super-blocks per case.
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels.cuda import dequant_k as D
from kernels.cuda import launch
from tests.oracles.cuda import assert_device_bits, dev, host
from tests.oracles.quant_blocks import BLOCK_CASES, K_TYPES, block_case, reference

KERNELS = {T.Q2_K: D.q2_k, T.Q3_K: D.q3_k, T.Q4_K: D.q4_k, T.Q5_K: D.q5_k, T.Q6_K: D.q6_k, T.IQ4_XS: D.iq4_xs}


def run_kernel(qtype: T, blocks: np.ndarray) -> np.ndarray:
    """KERNELS[qtype] over blocks (n_blocks, type_size): out (n_blocks, 256), NaN where nothing was written."""
    n = blocks.shape[0] * GGML_QUANT_SIZES[qtype][0]
    src = dev(blocks.reshape(-1))
    out = dev(np.full(n, np.nan, np.float32))
    grid, block = launch.elementwise(n)
    KERNELS[qtype][grid, block](out, src, src.view(np.float16), n)
    return host(out).reshape(blocks.shape[0], -1)


@pytest.mark.parametrize("case", BLOCK_CASES)
@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_super_block_kernels_equal_gguf(qtype, case):
    blocks = block_case(case, qtype, np.random.default_rng(int(qtype) * 3 + len(case)), 2)
    assert_device_bits(run_kernel(qtype, blocks), reference(blocks, qtype), f"{qtype.name} {case}")


def test_a_short_grid_strides_over_every_weight():
    """Fewer threads than weights: the grid-stride loop must still reach all of them."""
    blocks = block_case("quantized", T.Q4_K, np.random.default_rng(2), 3)
    src = dev(blocks.reshape(-1))
    out = dev(np.full(768, np.nan, np.float32))
    D.q4_k[2, 32](out, src, src.view(np.float16), 768)
    assert_device_bits(host(out).reshape(3, 256), reference(blocks, T.Q4_K), "Q4_K strided")
