"""kernels.cuda.dequant must equal gguf.quants.dequantize bit for bit, for every CPU-supported type.

Runs under the CUDA simulator where there is no GPU (tests/conftest.py), on the device where
there is one. The simulator runs each GPU thread as a Python thread, one per output weight
here, so shapes stay small: a few rows of one to three blocks. This is the entry point (shapes,
errors, the device entry); the super-block kernels alone are in test_cuda_dequant_k.py.
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

from kernels import dequant as cpu
from kernels.cuda.dequant import dequantize, dequantize_device, supported_types
from tests.oracles.cuda import assert_device_bits as assert_same_bits
from tests.oracles.quant_blocks import ALL_TYPES, BLOCK_TYPES, EXTREME_F16, IQ_TYPES, make_data, reference, row_bytes
from tests.oracles.quant_blocks import set_f16_fields


def assert_bit_exact(data: np.ndarray, qtype: Q) -> None:
    assert_same_bits(dequantize(data, qtype), reference(data, qtype), Q(qtype).name)


def test_same_types_as_the_cpu_side():
    assert set(supported_types()) == set(cpu.supported_types()) == set(ALL_TYPES + IQ_TYPES)


# (leading shape, blocks per row): odd row counts, one and several blocks per row, 1-3 axes.
SHAPES = [((3,), 2), ((1,), 1), ((), 3), ((2, 1), 1)]


@pytest.mark.parametrize(("leading", "blocks_per_row"), SHAPES, ids=str)
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_shapes(qtype, leading, blocks_per_row):
    rng = np.random.default_rng(int(qtype) * 10 + blocks_per_row)
    assert_bit_exact(make_data(rng, qtype, leading, blocks_per_row), qtype)


@settings(max_examples=12, deadline=None)
@given(
    qtype=st.sampled_from(ALL_TYPES),
    rows=st.integers(1, 3),
    blocks_per_row=st.integers(1, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_tensors(qtype, rows, blocks_per_row, seed):
    assert_bit_exact(make_data(np.random.default_rng(seed), qtype, (rows,), blocks_per_row), qtype)


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_random_bytes_everywhere(qtype):
    """Every byte random, the scales included (NaN, inf, subnormal scales too)."""
    rng = np.random.default_rng(int(qtype))
    n_rows = 3 if GGML_QUANT_SIZES[qtype][0] == 32 else 1
    data = rng.integers(0, 256, size=(n_rows, row_bytes(qtype, 2)), dtype=np.uint8)
    assert_bit_exact(data, qtype)


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_extreme_scales_one_per_block(qtype):
    """+-65504, subnormal and zero halves as every scale, one extreme value per block."""
    rng = np.random.default_rng(int(qtype) + 1)
    bits = rng.permutation(np.array(list(EXTREME_F16.values()), dtype=np.uint16))
    blocks_per_row = 4 if GGML_QUANT_SIZES[qtype][0] == 32 else 1
    n_rows = len(bits) // blocks_per_row
    data = rng.integers(0, 256, size=(n_rows, row_bytes(qtype, blocks_per_row)), dtype=np.uint8)
    set_f16_fields(data, qtype, bits.view(np.uint8).reshape(-1, 2))
    assert_bit_exact(data, qtype)


@pytest.mark.parametrize("fill", [0x00, 0xFF], ids=["zeros", "ones"])
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_constant_blocks(qtype, fill):
    """All-zero blocks (zero scales) and all-ones blocks (NaN scales and payloads)."""
    assert_bit_exact(np.full((1, row_bytes(qtype, 1)), fill, dtype=np.uint8), qtype)


def special_halves() -> np.ndarray:
    """uint16: every subnormal, and every exponent (zero, normal, inf/NaN) with a few mantissas."""
    subnormal = np.arange(1, 0x400, dtype=np.uint16)
    mantissas = np.array([0, 1, 2, 0x155, 0x200, 0x2AA, 0x3FE, 0x3FF], dtype=np.uint16)
    exponents = np.arange(32, dtype=np.uint16) << np.uint16(10)
    by_exponent = (exponents[:, None] | mantissas[None, :]).reshape(-1)
    magnitudes = np.concatenate([subnormal, by_exponent])
    return np.concatenate([magnitudes, magnitudes | np.uint16(0x8000)])


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16], ids=lambda t: t.name)
def test_special_16_bit_patterns(qtype):
    """Subnormals, +-0, +-inf and NaN payloads convert exactly as NumPy does (payload kept)."""
    data = special_halves().view(np.uint8).reshape(2, -1)
    got = dequantize(data, qtype).view(np.uint32)  # strict even on a GPU: integer-only kernels
    assert np.array_equal(got, reference(data, qtype).view(np.uint32))


def test_f32_bit_patterns_and_fresh_memory():
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=(3, 16), dtype=np.uint32)
    bits[0, :4] = [0x80000000, 0x7F800001, 0xFFC00123, 0x00000001]  # -0, sNaN, qNaN, subnormal
    data = bits.view(np.uint8)
    got = dequantize(data, Q.F32)
    assert np.array_equal(got.view(np.uint32), bits)  # copied bits: payloads kept on a GPU too
    assert not np.shares_memory(got, data)


def test_non_contiguous_rows():
    data = make_data(np.random.default_rng(1), Q.Q4_K, (4,), blocks_per_row=1)[::2]
    assert not data.flags.c_contiguous
    assert_bit_exact(data, Q.Q4_K)


def test_int_qtype_and_other_dtypes_are_accepted():
    data = make_data(np.random.default_rng(2), Q.Q8_0, (3,), blocks_per_row=1)
    want = reference(data, Q.Q8_0)
    assert_same_bits(dequantize(data, int(Q.Q8_0)), want, "int qtype")
    assert_same_bits(dequantize(data.view(np.uint16), Q.Q8_0), want, "uint16 bytes")


def test_empty_leading_axis():
    out = dequantize(np.zeros((0, row_bytes(Q.Q4_0, 2)), dtype=np.uint8), Q.Q4_0)
    assert out.shape == (0, 64) and out.dtype == np.float32


# --- device entry point ---------------------------------------------------------------------


@pytest.mark.parametrize("qtype", [Q.Q4_1, Q.Q6_K, Q.F16], ids=lambda t: t.name)
def test_device_entry_writes_into_the_callers_buffer(qtype):
    data = make_data(np.random.default_rng(3), qtype, (3,), blocks_per_row=1)
    want = reference(data, qtype)
    d_src = cuda.to_device(data)
    d_out = cuda.to_device(np.full(want.shape, np.nan, dtype=np.float32))  # caller-owned
    assert dequantize_device(d_out, d_src, qtype) is None
    assert_same_bits(d_out.copy_to_host(), want, qtype.name)
    flat = cuda.device_array(want.size, dtype=np.float32)  # any shape with the right total
    dequantize_device(flat, d_src, qtype)
    assert_same_bits(flat.copy_to_host().reshape(want.shape), want, qtype.name)


def test_device_entry_rejects_mismatched_arrays():
    data = make_data(np.random.default_rng(4), Q.Q4_0, (2,), blocks_per_row=1)
    d_src = cuda.to_device(data)
    with pytest.raises(ValueError, match="out must be"):
        dequantize_device(cuda.device_array((2, 33), dtype=np.float32), d_src, Q.Q4_0)
    with pytest.raises(ValueError, match="out must be"):
        dequantize_device(cuda.device_array((2, 32), dtype=np.float64), d_src, Q.Q4_0)
    out = cuda.device_array((2, 32), dtype=np.float32)
    with pytest.raises(ValueError, match="src must be"):
        dequantize_device(out, cuda.to_device(data.view(np.int16)), Q.Q4_0)
    with pytest.raises(ValueError, match="not a multiple"):
        dequantize_device(out, cuda.to_device(np.ascontiguousarray(data[:, :17])), Q.Q4_0)
    with pytest.raises(ValueError, match="not supported"):
        dequantize_device(out, d_src, Q.NVFP4)


# The CPU side's ValueErrors (bad type, bad row length, 0-d input) are checked for both
# implementations by tests/test_dequant.py.
