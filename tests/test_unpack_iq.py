"""kernels.unpack_iq (through kernels.unpack.to_affine): the grid, ternary and MXFP4 formats as
w = scale * q + sym * scale, against gguf.quants.dequantize.

Exactness, as tests/test_unpack.py argues it: each scale is gguf's float32 sub-block scale times
a power of two and each code a small integer, so scale * q + offset is exact in float64 and,
rounded once, gguf's value (whose one product is rounded once too); zeros compare as values.
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels.unpack import to_affine
from tests.oracles.quant_blocks import EXTREME_F16, IQ_TYPES, random_matrix, reference, set_f16_fields
from tests.test_unpack import affine_values, assert_same_values

# bits of the codes, weights per scale, and the symmetric offset (offset = sym * scale)
IQ_LAYOUT = {
    T.IQ1_S: (5, 32, -9.0), T.IQ1_M: (5, 16, -9.0), T.IQ2_XXS: (7, 32, -43.0), T.IQ2_XS: (7, 16, -43.0),
    T.IQ2_S: (7, 16, -43.0), T.IQ3_XXS: (6, 32, -31.0), T.IQ3_S: (5, 32, -15.0), T.TQ1_0: (2, 32, -1.0),
    T.TQ2_0: (2, 32, -1.0), T.MXFP4: (5, 32, -12.0),
}


@pytest.mark.parametrize("n,k", [(1, 256), (5, 1024)])
@pytest.mark.parametrize("qtype", IQ_TYPES, ids=lambda t: t.name)
def test_affine_form_equals_gguf(qtype, n, k):
    data = random_matrix(qtype, n, k, np.random.default_rng(int(qtype) * 31 + n))
    assert_same_values(affine_values(data, qtype), reference(data, qtype).reshape(n, k))


@pytest.mark.parametrize("qtype", IQ_TYPES, ids=lambda t: t.name)
def test_layout_codes_scales_and_symmetry(qtype):
    bits, bs, sym = IQ_LAYOUT[qtype]
    a = to_affine(random_matrix(qtype, 3, 512, np.random.default_rng(int(qtype))), qtype)
    assert (a.bits, a.bs, a.sym) == (bits, bs, sym)
    assert a.q.dtype == np.uint8 and a.q.shape == (3, 512) and int(a.q.max()) < 1 << bits
    assert a.scale.shape == a.offset.shape == (3, 512 // bs)
    np.testing.assert_array_equal(a.offset, np.float32(sym) * a.scale)


@pytest.mark.parametrize("qtype", IQ_TYPES, ids=lambda t: t.name)
def test_extreme_and_random_scales(qtype):
    """+-65504, subnormal and zero halves as every scale, then every byte random (finite values)."""
    bsz, tsz = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(int(qtype))
    for bits in EXTREME_F16.values():
        data = rng.integers(0, 256, (2, tsz * (256 // bsz)), np.uint8)
        set_f16_fields(data, qtype, np.array([bits], np.uint16).view(np.uint8))
        assert_same_values(affine_values(data, qtype), reference(data, qtype))
    data = rng.integers(0, 256, (16, tsz * (256 // bsz)), np.uint8)
    with np.errstate(all="ignore"):
        got, want = affine_values(data, qtype), reference(data, qtype)
    finite = np.isfinite(want) & np.isfinite(got)
    assert finite.mean() > 0.5
    assert_same_values(np.where(finite, got, 0), np.where(finite, want, 0))
