"""kernels/cuda/dequant_iq.py through kernels.cuda.dequant.dequantize, bit for bit against gguf.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
The simulator runs a Python thread per weight, so one super-block per case (eight 32-weight
MXFP4 blocks): sane blocks, every byte random (NaN, inf and subnormal scales), and one
extreme half per block; plus a grid shorter than the weights (the grid-stride loop).
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels.cuda import dequant_iq as D
from kernels.cuda.dequant import dequantize
from tests.oracles.cuda import assert_device_bits, dev, host
from tests.oracles.quant_blocks import BLOCK_CASES, IQ_TYPES, block_case, reference


@pytest.mark.parametrize("case", BLOCK_CASES)
@pytest.mark.parametrize("qtype", IQ_TYPES, ids=lambda t: t.name)
def test_blocks_equal_gguf(qtype, case):
    n = 8 if GGML_QUANT_SIZES[qtype][0] == 32 else 1
    blocks = block_case(case, qtype, np.random.default_rng(int(qtype) * 5 + len(case)), n)
    assert_device_bits(dequantize(blocks, qtype), reference(blocks, qtype), f"{qtype.name} {case}")


@pytest.mark.parametrize("qtype", [T.IQ1_M, T.IQ3_S], ids=lambda t: t.name)
def test_a_short_grid_strides_over_every_weight(qtype):
    """Fewer threads than weights (and than IQ1_M's blocks): every weight is still written."""
    blocks = block_case("quantized", qtype, np.random.default_rng(3), 3)
    if qtype == T.IQ1_M:
        src = dev(blocks.reshape(-1))
        hbits = dev(np.zeros(3, np.uint16))
        D.iq1_m_scales[1, 2](hbits, src, 3)
        out = dev(np.full(768, np.nan, np.float32))
        D.iq1_m[2, 32](out, src, hbits.view(np.float16), 768)
    else:
        src = dev(blocks.reshape(-1))
        out = dev(np.full(768, np.nan, np.float32))
        D.iq3_s[2, 32](out, src, src.view(np.float16), 768)
    assert_device_bits(host(out).reshape(3, 256), reference(blocks, qtype), f"{qtype.name} strided")
