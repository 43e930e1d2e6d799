"""kernels.dequant.dequantize must equal gguf.quants.dequantize bit for bit, for every type.

This is the entry point: shapes, dtypes and errors, through to every kernel. The kernels alone
are in test_dequant_legacy.py and test_dequant_k.py; the CUDA twin in test_cuda_dequant.py.
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.dequant import dequantize, supported_types
from tests.oracles.quant_blocks import (
    ALL_TYPES,
    BLOCK_TYPES,
    EXTREME_F16,
    IQ_TYPES,
    make_data,
    reference,
    row_bytes,
    set_f16_fields,
)

LEADING_SHAPES = [(), (1,), (3,), (7,), (1, 3), (3, 7), (7, 1, 3)]


def assert_bit_exact(data: np.ndarray, qtype: Q) -> None:
    got = dequantize(data, qtype)
    want = reference(data, qtype)
    assert got.dtype == np.float32
    assert got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), qtype.name


def test_every_gguf_type_we_claim_is_covered():
    assert set(supported_types()) == set(ALL_TYPES + IQ_TYPES)


@pytest.mark.parametrize("leading", LEADING_SHAPES, ids=str)
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_leading_shapes(qtype, leading):
    rng = np.random.default_rng(int(qtype) * 100 + len(leading))
    assert_bit_exact(make_data(rng, qtype, leading, blocks_per_row=3), qtype)


@settings(max_examples=40, deadline=None)
@given(
    qtype=st.sampled_from(ALL_TYPES),
    rows=st.integers(1, 9),
    blocks_per_row=st.integers(1, 5),
    ndim=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_tensors(qtype, rows, blocks_per_row, ndim, seed):
    leading = {1: (), 2: (rows,), 3: (rows, 2)}[ndim]
    assert_bit_exact(make_data(np.random.default_rng(seed), qtype, leading, blocks_per_row), qtype)


@settings(max_examples=30, deadline=None)
@given(qtype=st.sampled_from(BLOCK_TYPES), seed=st.integers(0, 2**32 - 1))
def test_random_bytes_everywhere(qtype, seed):
    """Every byte random, the scales included (NaN and inf scales too): must still match."""
    rng = np.random.default_rng(seed)
    assert_bit_exact(rng.integers(0, 256, size=(3, row_bytes(qtype, 2)), dtype=np.uint8), qtype)


@pytest.mark.parametrize("bits", EXTREME_F16.values(), ids=EXTREME_F16.keys())
@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_extreme_scales(qtype, bits):
    rng = np.random.default_rng(bits)
    data = rng.integers(0, 256, size=(7, row_bytes(qtype, 2)), dtype=np.uint8)
    set_f16_fields(data, qtype, np.array([bits], dtype=np.uint16).view(np.uint8))
    assert_bit_exact(data, qtype)


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_mixed_extreme_scales_per_block(qtype):
    rng = np.random.default_rng(int(qtype))
    data = rng.integers(0, 256, size=(5, row_bytes(qtype, 8)), dtype=np.uint8)
    n_blocks = data.size // GGML_QUANT_SIZES[qtype][1]
    bits = rng.choice(np.array(list(EXTREME_F16.values()), dtype=np.uint16), size=n_blocks)
    set_f16_fields(data, qtype, bits.view(np.uint8).reshape(n_blocks, 2))
    assert_bit_exact(data, qtype)


@pytest.mark.parametrize("fill", [0x00, 0xFF], ids=["zeros", "ones"])
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_constant_blocks(qtype, fill):
    """All-zero blocks (zero scales) and all-ones blocks (NaN scales and payloads)."""
    data = np.full((3, row_bytes(qtype, 2)), fill, dtype=np.uint8)
    assert_bit_exact(data, qtype)


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16], ids=lambda t: t.name)
def test_every_16_bit_pattern(qtype):
    """Subnormals, +-0, +-inf and every NaN payload convert exactly as numpy does."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    assert_bit_exact(bits.view(np.uint8).reshape(256, 512), qtype)


def test_f32_bit_patterns_and_fresh_memory():
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=(4, 64), dtype=np.uint32)
    bits[0, :4] = [0x80000000, 0x7F800001, 0xFFC00123, 0x00000001]  # -0, sNaN, qNaN, subnormal
    data = bits.view(np.uint8)
    got = dequantize(data, Q.F32)
    assert_bit_exact(data, Q.F32)
    assert not np.shares_memory(got, data)


@pytest.mark.parametrize("qtype", [Q.Q4_K, Q.Q8_0], ids=lambda t: t.name)
def test_non_contiguous_rows(qtype):
    data = make_data(np.random.default_rng(1), qtype, (6,), blocks_per_row=2)[::2]
    assert not data.flags.c_contiguous
    assert_bit_exact(data, qtype)


def test_int_qtype_is_accepted():
    data = make_data(np.random.default_rng(2), Q.Q6_K, (3,), blocks_per_row=1)
    assert np.array_equal(dequantize(data, int(Q.Q6_K)), dequantize(data, Q.Q6_K))


def test_empty_leading_axis():
    out = dequantize(np.zeros((0, row_bytes(Q.Q4_0, 2)), dtype=np.uint8), Q.Q4_0)
    assert out.shape == (0, 64)
    assert out.dtype == np.float32


# The CPU kernels and their CUDA twins (simulated without a GPU) refuse bad input alike.
IMPLS = pytest.mark.parametrize("impl", ["cpu", "cuda"])


def _impl(name):
    if name == "cpu":
        return dequantize
    from kernels.cuda.dequant import dequantize as cuda_dequantize

    return cuda_dequantize


@IMPLS
@pytest.mark.parametrize("qtype", [Q.NVFP4, Q.Q8_1, 9999, "Q4_0"], ids=str)
def test_unsupported_type_raises(qtype, impl):
    with pytest.raises(ValueError, match="dequantize"):
        _impl(impl)(np.zeros((1, 256), dtype=np.uint8), qtype)


@IMPLS
@pytest.mark.parametrize(
    ("qtype", "nbytes"), [(Q.Q4_0, 17), (Q.Q8_0, 35), (Q.Q4_K, 143), (Q.F16, 3), (Q.F32, 6)]
)
def test_bad_byte_length_raises(qtype, nbytes, impl):
    with pytest.raises(ValueError, match="not a multiple"):
        _impl(impl)(np.zeros((2, nbytes), dtype=np.uint8), qtype)


@IMPLS
def test_zero_dimensional_input_raises(impl):
    with pytest.raises(ValueError, match="at least one axis"):
        _impl(impl)(np.uint8(3), Q.Q8_0)
    out = _impl(impl)(np.zeros((0, 36), dtype=np.uint8), Q.Q4_0)  # no rows: an empty result
    assert out.shape == (0, 64) and out.dtype == np.float32


@pytest.mark.parametrize("qtype", [Q.Q4_1, Q.Q5_1], ids=lambda t: t.name)
def test_nan_scale_and_nan_min_keep_the_scales_nan(qtype):
    """d and m both NaN: gguf's (d * q) + m returns d's NaN; a compiled add may swap its operands."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(2, row_bytes(qtype, 2)), dtype=np.uint8)
    blocks = data.reshape(-1, GGML_QUANT_SIZES[qtype][1])
    blocks[:, 0:2] = np.array([0xFEA0], np.uint16).view(np.uint8)  # a negative NaN with a payload
    blocks[:, 2:4] = np.array([0x7E3A], np.uint16).view(np.uint8)  # a positive NaN with another
    assert_bit_exact(data, qtype)
