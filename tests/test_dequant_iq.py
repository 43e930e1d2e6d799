"""kernels.dequant_iq through kernels.dequant.dequantize, bit for bit against gguf.quants.dequantize.

IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, TQ1_0, TQ2_0 and MXFP4, on sane
blocks (realistic scales, random codes; gguf cannot quantize the IQ types), every byte
random (NaN, inf and subnormal scales, NaN payloads), extreme halves as scales, constant
blocks, several leading shapes, and every MXFP4 exponent byte with every code.
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels.dequant import dequantize, supported_types
from tests.oracles.quant_blocks import (
    BLOCK_CASES, IQ_TYPES, assert_same_bits, block_case, make_data, reference, row_bytes,
)


def test_every_type_is_supported():
    assert set(IQ_TYPES) <= set(supported_types())


@pytest.mark.parametrize("case", BLOCK_CASES)
@pytest.mark.parametrize("qtype", IQ_TYPES, ids=lambda t: t.name)
def test_blocks_equal_gguf(qtype, case):
    n = 64 if GGML_QUANT_SIZES[qtype][0] == 32 else 9
    blocks = block_case(case, qtype, np.random.default_rng(int(qtype) * 11 + len(case)), n)
    assert_same_bits(dequantize(blocks, qtype), reference(blocks, qtype), f"{qtype.name} {case}")


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x55], ids=["zeros", "ones", "fives"])
@pytest.mark.parametrize("qtype", IQ_TYPES, ids=lambda t: t.name)
def test_constant_blocks(qtype, fill):
    """All-zero (zero scales), all-ones (NaN scales and payloads) and a repeated pattern."""
    data = np.full((2, row_bytes(qtype, 2)), fill, np.uint8)
    assert_same_bits(dequantize(data, qtype), reference(data, qtype), qtype.name)


@pytest.mark.parametrize("leading", [(), (3,), (2, 2)], ids=str)
def test_leading_shapes(leading):
    for qtype in IQ_TYPES:
        data = make_data(np.random.default_rng(len(leading)), qtype, leading, 2)
        got = dequantize(data, qtype)
        assert got.shape == (*leading, 2 * GGML_QUANT_SIZES[qtype][0])
        assert_same_bits(got, reference(data, qtype), qtype.name)


def test_mxfp4_every_exponent_and_code():
    """256 exponent bytes (2^-128 .. 2^127: subnormal, overflow to inf) x all 16 codes in each nibble."""
    blocks = np.zeros((256, 17), np.uint8)
    blocks[:, 0] = np.arange(256)
    codes = np.arange(16, dtype=np.uint8)
    blocks[:, 1:17] = codes | (codes[::-1] << 4)
    got = dequantize(blocks, T.MXFP4)
    assert_same_bits(got, reference(blocks, T.MXFP4), "MXFP4")
    assert np.isinf(got[255]).any() and got[0, 1] == np.float32(2.0**-128)
