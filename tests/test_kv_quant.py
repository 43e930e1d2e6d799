"""kernels/kv_quant.py: writing KV cache rows, bit for bit as gguf.quants and llama.cpp's
reference quantizers (tests/fixtures/kv_quants.npz, recorded by record_kv_quants.py).

Where the two disagree, llama.cpp's C is followed: the sign of a zero scale or minimum (a
block of zeros, or one whose minimum is a zero of either sign; NumPy's argmax/min pick by
their own rules there). gguf is compared on rows without negative zeros."""

import gguf.quants as gq
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from kernels import kv_types as kt
from kernels.kv_quant import bf16_bits, dequantize_rows, quantize_rows, store_row

FIXTURE = np.load(__import__("pathlib").Path(__file__).with_name("fixtures") / "kv_quants.npz")
GGUF_TYPES = [n for n, t in kt.NAMES.items() if t != kt.IQ4_NL]  # gguf cannot quantize IQ4_NL
BLOCK_TYPES = [n for n, t in kt.NAMES.items() if kt.is_quantized(t)]


def _rows(seed=0, n=24, dim=96):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)) * 10.0 ** rng.uniform(-4, 3, (n, 1))
    x[0] = np.round(x[0] * 2) / 2  # ties
    x[1, :32] = 0.0  # an all-zero block
    x[2, 40] = 1e6  # a block whose scale overflows float16 to inf
    x[3, 64:] = 7.25  # a constant block (max == min)
    x[4, 1] = -np.abs(x[4]).max() * 1.5  # the largest magnitude negative
    x[5, :32] = 0.25  # scale 1 (largest |x| 127): halves and a value just below one (C roundf's edge)
    x[5, :6] = [127.0, 0.49999997, 2.5, -2.5, -0.5, 1.5]
    return x.astype(np.float32) + np.float32(0.0)  # -0.0 -> 0.0


@pytest.mark.parametrize("name", GGUF_TYPES)
def test_rows_equal_gguf_bit_for_bit(name):
    t = kt.NAMES[name]
    x = _rows(kt.NAMES[name])
    got = quantize_rows(x, t)
    assert got.dtype == kt.storage_dtype(t) and got.shape == (x.shape[0], kt.row_width(t, x.shape[1]))
    with np.errstate(all="ignore"):
        want = gq.quantize(x, Q(t))
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
        back = dequantize_rows(got, t)
        ref = x if t == kt.F32 else gq.dequantize(want, Q(t))
    np.testing.assert_array_equal(back, ref)


@pytest.mark.parametrize("name", BLOCK_TYPES)
def test_rows_equal_llama_cpp_reference(name):
    """IQ4_NL included: llama.cpp's quantize_row_iq4_nl_ref (one pass, no scale search); the
    others also on rows of signed zeros and zero blocks (x0: IQ4_NL's codes there are undefined)."""
    got = quantize_rows(FIXTURE["x"], kt.NAMES[name])
    np.testing.assert_array_equal(got, FIXTURE[name])
    if name != "iq4_nl":
        np.testing.assert_array_equal(quantize_rows(FIXTURE["x0"], kt.NAMES[name]), FIXTURE[name + "_x0"])


def test_bf16_rounds_to_nearest_even_and_keeps_nan_quiet():
    x = np.array([1.0, 1.00390625, 1.01171875, -3.3e38, np.inf, np.nan, 1e-40], np.float32)
    x = np.concatenate([x, np.frombuffer(np.uint32(0x7F800001).tobytes(), np.float32)])  # a signalling NaN
    got = np.array([bf16_bits(v) for v in x], np.uint16)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, gq.quantize(x, Q.BF16).view(np.uint16))
    assert got[-1] & 0x40  # quiet


def test_store_row_writes_one_row_of_each_type():
    x = _rows(3, n=8, dim=64)[4]
    codes = np.zeros(32, np.int32)
    for t in kt.NAMES.values():
        shape = (2, 3, 5)
        a = np.full((*shape, kt.row_width(t, 64)), 0xAB, kt.storage_dtype(t))
        ref = (t, a if t == kt.F32 else np.zeros((*shape, 0), np.float32),
               a if t in (kt.F16, kt.BF16) else np.zeros((*shape, 0), np.uint16),
               a if kt.is_quantized(t) else np.zeros((*shape, 0), np.uint8))
        store_row(ref, 1, 2, 3, x, codes)
        np.testing.assert_array_equal(a[1, 2, 3], quantize_rows(x, t))
        a[1, 2, 3] = 0xAB
        assert (a == a.dtype.type(0xAB)).all()  # nothing else written


def test_head_dim_must_be_whole_blocks():
    with pytest.raises(ValueError, match="K cache type q8_0 with block size 32 does not divide n_embd_head_k=48"):
        quantize_rows(np.zeros((1, 48), np.float32), kt.Q8_0)
