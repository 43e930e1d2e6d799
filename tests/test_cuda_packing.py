"""kernels/cuda/packing.py: the CUDA matmul's affine layout decodes to gguf's dequantized matrix.

Runs under NUMBA_ENABLE_CUDASIM=1 without a GPU (tests/conftest.py), on the device with one.
Shapes are small: the simulator runs each thread as a Python thread.
"""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf import quants

from kernels.cuda.packing import KIND_BYTE, KIND_FLOAT, KIND_NIBBLE, host_form, upload
from tests.oracles.quant_blocks import IQ_TYPES, random_matrix

RNG = np.random.default_rng(7)
# One type per code layout and scale size: nibbles (4-bit, 2-bit K), bytes (5, 6, 8-bit), floats.
TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0, T.Q2_K, T.Q4_K, T.Q6_K, T.IQ4_NL, T.F16, T.BF16, T.F32]


def _weights(qt, n, k, rng=RNG):
    raw = random_matrix(qt, n, k, rng)  # valid random blocks (gguf cannot quantize K-quants)
    return raw, quants.dequantize(raw, qt).reshape(n, k)


@pytest.mark.parametrize("qt", TYPES + list(IQ_TYPES), ids=lambda t: t.name)
def test_host_form_is_the_dequantized_matrix(qt):
    """Every layout decodes to gguf's values (affine rounding aside)."""
    k = max(64, GGML_QUANT_SIZES[qt][0])
    raw, wd = _weights(qt, 3, k)
    kind, bs, codes, scale, offset, w = host_form(raw, qt, 3, k)
    if kind == KIND_FLOAT:
        np.testing.assert_array_equal(w, wd)
        return
    assert codes.dtype == np.uint32
    per, bits = (8, 4) if kind == KIND_NIBBLE else (4, 8)  # weights per 32-bit word, bits per weight
    assert kind in (KIND_NIBBLE, KIND_BYTE) and codes.shape == (3, k // per)
    shifts = np.arange(per, dtype=np.uint32) * bits
    q = ((codes[:, :, None] >> shifts) & ((1 << bits) - 1)).reshape(3, k).astype(np.float32)
    got = np.repeat(scale, bs, axis=1) * q + np.repeat(offset, bs, axis=1)
    np.testing.assert_allclose(got, wd, rtol=1e-6, atol=1e-6 * np.abs(wd).max())


@pytest.mark.parametrize("qt", [T.Q4_K, T.Q8_0, T.F16], ids=lambda t: t.name)
def test_upload_holds_the_host_form(qt):
    raw, _ = _weights(qt, 2, 256)
    form = host_form(raw, qt, 2, 256)
    m = upload(raw, qt, 2, 256)
    assert (m.qtype, m.n, m.k, m.kind, m.bs) == (qt, 2, 256, form[0], form[1])
    for dev_array, host_array in zip((m.codes, m.scale, m.offset, m.w), form[2:]):
        np.testing.assert_array_equal(dev_array.copy_to_host(), host_array)
    assert m.nbytes == sum(a.nbytes for a in form[2:])
