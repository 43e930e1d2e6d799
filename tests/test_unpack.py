"""kernels.unpack.to_affine: every quantized type as w = scale * q + offset, against gguf.quants.dequantize.

Exactness: scales are float16 times a sub-scale of at most 8 bits and codes have at most 8
bits, so scale * q + offset is exact in float64; rounded once to float32 it is what gguf's
float32 arithmetic gives (its products are exact too, and its one subtraction rounds
correctly). The one difference is the sign of zero: d * (q - 8) is -0.0 for d < 0, while
d * q + (-8 d) is +0.0, so zeros are compared as values and everything else bit for bit.
"""

import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels.unpack import IQ4_VALUES, to_affine
from tests.oracles.quant_blocks import EXTREME_F16, QUANTIZED, random_matrix, reference, set_f16_fields

# bits of the codes, weights per scale, and the symmetric offset (offset = sym * scale), per type
LAYOUT = {
    T.Q4_0: (4, 32, -8.0), T.Q4_1: (4, 32, 0.0), T.Q5_0: (5, 32, -16.0), T.Q5_1: (5, 32, 0.0),
    T.Q8_0: (8, 32, -128.0), T.IQ4_NL: (8, 32, -128.0), T.IQ4_XS: (8, 32, -128.0), T.Q2_K: (2, 16, 0.0),
    T.Q3_K: (3, 16, -4.0), T.Q4_K: (4, 32, 0.0), T.Q5_K: (5, 32, 0.0), T.Q6_K: (6, 16, -32.0),
}


def affine_values(data: np.ndarray, qtype: T) -> np.ndarray:
    """float32 (n, k) = scale * q + offset, computed exactly in float64 and rounded once."""
    a = to_affine(data, qtype)
    s = np.repeat(a.scale.astype(np.float64), a.bs, axis=1)
    o = np.repeat(a.offset.astype(np.float64), a.bs, axis=1)
    return (s * a.q + o).astype(np.float32)


def assert_same_values(got: np.ndarray, want: np.ndarray) -> None:
    """Equal bits, except that a zero may carry either sign (see the module docstring)."""
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32
    bad = (got.view(np.uint32) != want.view(np.uint32)) & ~((got == 0) & (want == 0))
    assert not bad.any(), (np.flatnonzero(bad)[:8], got.ravel()[bad.ravel()][:4], want.ravel()[bad.ravel()][:4])


@pytest.mark.parametrize("n,k", [(1, 256), (7, 512), (3, 1024)])
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_affine_form_equals_gguf(qtype, n, k):
    rng = np.random.default_rng(int(qtype) * 31 + n)
    data = random_matrix(qtype, n, k, rng)
    assert_same_values(affine_values(data, qtype), reference(data, qtype).reshape(n, k))


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_layout_codes_scales_and_symmetry(qtype):
    bits, bs, sym = LAYOUT[qtype]
    data = random_matrix(qtype, 5, 512, np.random.default_rng(int(qtype)))
    a = to_affine(data, qtype)
    assert (a.bits, a.bs, a.sym) == (bits, bs, sym)
    assert a.q.dtype == np.uint8 and a.q.shape == (5, 512) and int(a.q.max()) < 1 << bits
    assert a.scale.dtype == a.offset.dtype == np.float32 and a.scale.shape == a.offset.shape == (5, 512 // bs)
    if sym:  # symmetric types: the kernels rebuild the offset from the scale instead of storing it
        np.testing.assert_array_equal(a.offset, np.float32(sym) * a.scale)


@pytest.mark.parametrize("bits", EXTREME_F16.values(), ids=EXTREME_F16.keys())
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_extreme_finite_scales(qtype, bits):
    """+-65504, subnormal and zero halves as every scale: still gguf's values."""
    rng = np.random.default_rng(bits)
    data = rng.integers(0, 256, (3, GGML_QUANT_SIZES[qtype][1] * (256 // GGML_QUANT_SIZES[qtype][0])), np.uint8)
    set_f16_fields(data, qtype, np.array([bits], np.uint16).view(np.uint8))
    assert_same_values(affine_values(data, qtype), reference(data, qtype))


def test_iq4_code_book_is_llama_cpps():
    np.testing.assert_array_equal(IQ4_VALUES, gguf.quants.IQ4_NL.kvalues)


def test_bad_input_is_a_value_error():
    data = random_matrix(T.Q4_0, 2, 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8 rows"):
        to_affine(data.view(np.int8), T.Q4_0)
    with pytest.raises(ValueError, match="uint8 rows"):
        to_affine(data[:, :-1], T.Q4_0)  # not whole blocks
    with pytest.raises(ValueError, match="uint8 rows"):
        to_affine(data.reshape(-1), T.Q4_0)  # no row axis
    with pytest.raises(ValueError, match="no integer form"):
        to_affine(np.zeros((2, 8), np.uint8), T.F16)
