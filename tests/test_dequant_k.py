"""kernels.dequant_k, kernel by kernel, bit for bit against gguf.quants.dequantize.

As tests/test_dequant_legacy.py does for the 32-weight formats: each super-block kernel
called directly on sane blocks, random bytes and extreme halves, and the 6-bit scale/min
unpacking of Q4_K and Q5_K against gguf's own.
"""

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from kernels import dequant_k as D
from kernels.dequant_legacy import IQ4_LEVELS
from tests.oracles.quant_blocks import BLOCK_CASES, K_TYPES
from tests.test_dequant_legacy import check_kernel

KERNELS = {  # qtype -> (kernel, the arguments after out and blocks)
    T.Q2_K: (D.dequant_q2_k, (16,)), T.Q3_K: (D.dequant_q3_k, (16,)), T.Q4_K: (D.dequant_q4_k, (32,)),
    T.Q5_K: (D.dequant_q5_k, (32,)), T.Q6_K: (D.dequant_q6_k, (16,)), T.IQ4_XS: (D.dequant_iq4_xs, (IQ4_LEVELS, 16)),
}


@pytest.mark.parametrize("case", BLOCK_CASES)
@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_super_block_kernels_equal_gguf(qtype, case):
    check_kernel(KERNELS, qtype, case, 13)


def test_scale_min_unpacking_is_ggufs():
    """The 12 bytes of eight 6-bit (scale, min) pairs, for every sub-block of random headers."""
    blocks = np.random.default_rng(4).integers(0, 256, (64, 144), dtype=np.uint8)
    sc, mn = gguf.quants.Q4_K.get_scale_min(blocks[:, 4:16].copy())
    sc, mn = sc.reshape(64, 8), mn.reshape(64, 8)
    for b in range(64):
        for j in range(8):
            assert D._k_scale_min(blocks, b, j) == (sc[b, j], mn[b, j]), (b, j)
