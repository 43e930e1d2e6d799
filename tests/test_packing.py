"""kernels.packing.pack: the interleaved layout read back by a NumPy decoder, against gguf.quants.dequantize.

The decoder below is written from the layout the module docstring states, not from pack().
pack() stores scales as float16; test weights get scales with 3 significant bits
(quant_blocks.coarse_scales), so every sub-block scale fits a half exactly and the weights
read back are gguf's bit for bit (zeros as values: see test_unpack.py). With realistic
scales the halves must be the nearest ones to kernels.unpack's float32 scales.
"""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from kernels.packing import FLOAT_TYPES, ROWS, pack
from kernels.unpack import to_affine
from tests.oracles.quant_blocks import FLOATS, IQ_TYPES, QUANTIZED, coarse_scales, random_matrix, reference
from tests.test_unpack import LAYOUT, assert_same_values
from tests.test_unpack_iq import IQ_LAYOUT


def _halves(bits: np.ndarray, n_pad: int) -> np.ndarray:
    """(G * nbs * 16,) float16 bits in (group, sub-block, row) order -> float64 (n_pad, nbs)."""
    h = bits.view(np.float16).astype(np.float64).reshape(n_pad // ROWS, -1, ROWS)
    return h.transpose(0, 2, 1).reshape(n_pad, -1)


def decode_codes(qs: np.ndarray, width: int, n_pad: int, k: int) -> np.ndarray:
    """Unsigned codes (n_pad, k) from the packed bytes, per the layout of kernels/packing.py."""
    g, nb = n_pad // ROWS, k // 32
    if width == 8:  # (g, b, chunk c, row r, byte t) holds weight 32 b + 4 c + t
        return qs.reshape(g, nb, 8, ROWS, 4).transpose(0, 3, 1, 2, 4).reshape(n_pad, k)
    per = qs.reshape(g, nb, -1)
    nib = per[..., :256].reshape(g, nb, 4, ROWS, 4)  # low nibble: weight 4c + t, high: 16 + 4c + t
    lo, hi = (nib & 15).astype(np.int64), (nib >> 4).astype(np.int64)
    c = np.arange(4).reshape(1, 1, 4, 1, 1)
    if width == 5:  # one plane: bit c for chunk c's low nibble, bit 4 + c for its high one
        plane = per[..., 256:320].reshape(g, nb, 1, ROWS, 4).astype(np.int64)
        lo, hi = lo | ((plane >> c) & 1) << 4, hi | ((plane >> (4 + c)) & 1) << 4
    elif width == 6:  # two planes, low nibbles' bits 2c..2c+1 in the first, high nibbles' in the second
        p0 = per[..., 256:320].reshape(g, nb, 1, ROWS, 4).astype(np.int64)
        p1 = per[..., 320:384].reshape(g, nb, 1, ROWS, 4).astype(np.int64)
        lo, hi = lo | ((p0 >> (2 * c)) & 3) << 4, hi | ((p1 >> (2 * c)) & 3) << 4
    q = np.concatenate([lo, hi], axis=2)  # (g, b, 8 chunks of 4 weights, r, t)
    return q.transpose(0, 3, 1, 2, 4).reshape(n_pad, k)


def unpacked(w):
    """(codes, scale, offset) of a PackedMatrix, padding rows included, scales as float64."""
    n_pad = -(-w.n // ROWS) * ROWS
    d = _halves(w.d, n_pad)
    m = w.sym * d if w.sym else _halves(w.m, n_pad)
    return decode_codes(w.qs, w.width, n_pad, w.k), d, m


@pytest.mark.parametrize("n", [1, 16, 37])
@pytest.mark.parametrize("qtype", QUANTIZED + IQ_TYPES, ids=lambda t: t.name)
def test_packed_weights_read_back_as_gguf_values(qtype, n):
    k = 512
    data = coarse_scales(random_matrix(qtype, n, k, np.random.default_rng(int(qtype) + n)), qtype)
    w = pack(data, qtype, n, k)
    bits, bs, sym = {**LAYOUT, **IQ_LAYOUT}[qtype]
    assert (w.width, w.bs, w.sym) == ({2: 4, 3: 4, 7: 8}.get(bits, bits), bs, sym) and not w.is_float
    q, d, m = unpacked(w)
    got = (np.repeat(d, bs, axis=1) * q + np.repeat(m, bs, axis=1)).astype(np.float32)
    assert_same_values(got[:n], reference(data, qtype).reshape(n, k))
    assert not q[n:].any() and not d[n:].any() and not m[n:].any()  # padding rows are zeros
    assert w.src_nbytes == data.nbytes
    assert w.nbytes == w.qs.nbytes + w.d.nbytes + w.m.nbytes


@pytest.mark.parametrize("qtype", [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS, T.IQ2_XS, T.IQ3_XXS,
                                   T.IQ1_M], ids=lambda t: t.name)
def test_sub_block_scales_round_to_the_nearest_half(qtype):
    """Realistic scales: d * sc has more bits than a half holds; the layout keeps the nearest."""
    data = random_matrix(qtype, 20, 256, np.random.default_rng(int(qtype)))
    a = to_affine(data, qtype)
    q, d, m = unpacked(pack(data, qtype, 20, 256))
    np.testing.assert_array_equal(q[:20], a.q)  # codes are never rounded
    np.testing.assert_array_equal(d[:20], a.scale.astype(np.float16))
    if not a.sym:  # symmetric types store no offset: unpacked() rebuilds it as sym * d
        np.testing.assert_array_equal(m[:20], a.offset.astype(np.float16))


@pytest.mark.parametrize("n", [3, 16, 17])
@pytest.mark.parametrize("qtype", FLOATS, ids=lambda t: t.name)
def test_float_layout_keeps_the_files_bits(qtype, n):
    data = random_matrix(qtype, n, 64, np.random.default_rng(n))
    w = pack(data, qtype, n, 64)
    assert w.is_float and w.w.dtype == FLOAT_TYPES[qtype] and w.nbytes == w.w.nbytes
    n_pad = -(-n // ROWS) * ROWS
    rows = w.w.reshape(n_pad // ROWS, 64, ROWS).transpose(0, 2, 1).reshape(n_pad, 64)  # (G, k, 16): rows side by side
    np.testing.assert_array_equal(np.ascontiguousarray(rows[:n]).view(np.uint8), data.reshape(n, -1))
    assert not rows[n:].any()


def test_bad_input_is_a_value_error():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="bytes given"):
        pack(random_matrix(T.Q4_0, 2, 64, rng), T.Q4_0, 3, 64)
    with pytest.raises(ValueError, match="not a multiple"):
        pack(np.zeros((2, 18), np.uint8), T.Q4_0, 2, 16)
    big = random_matrix(T.Q4_K, 1, 256, rng)
    big[0, 0:2] = np.array([0x7BFF], np.uint16).view(np.uint8)  # d = 65504: d * sc leaves float16 range
    big[0, 4:8] = 63
    with pytest.raises(ValueError, match="float16 range"), np.errstate(over="ignore"):
        pack(big, T.Q4_K, 1, 256)
    mx = random_matrix(T.MXFP4, 1, 64, rng)
    mx[0, 17] = 144  # MXFP4 block scale 2^16: beyond a half, refused rather than made inf
    with pytest.raises(ValueError, match="float16 range"), np.errstate(over="ignore"):
        pack(mx, T.MXFP4, 1, 64)
    mx[0, 17] = 143  # 2^15: the largest that packs
    assert pack(mx, T.MXFP4, 1, 64).width == 5


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q5_1, T.Q6_K, T.Q8_0, T.F16, T.F32], ids=lambda t: t.name)
def test_a_matrix_packed_in_chunks_equals_it_packed_whole(qtype, monkeypatch):
    """Matrices taller than CHUNK_ROWS are packed a chunk of row groups at a time into their final
    arrays (to bound load-time memory): the result is the whole-matrix packing, array for array,
    with the last chunk's padding rows where they belong."""
    from kernels import packing

    n, k = 101, 256  # chunks of 32 rows: 3 full ones and a padded 5-row tail
    data = random_matrix(qtype, n, k, np.random.default_rng(int(qtype)))
    if qtype not in FLOATS:
        data = coarse_scales(data, qtype)
    whole = pack(data, qtype, n, k)
    monkeypatch.setattr(packing, "CHUNK_ROWS", 32)
    calls = []  # consumed(r0, r1): each chunk's rows, once packed (the loader releases their pages)
    chunked = pack(data, qtype, n, k, consumed=lambda r0, r1: calls.append((r0, r1)))
    assert calls == [(0, 32), (32, 64), (64, 96), (96, 101)]
    for name in ("qs", "d", "m", "w"):
        a, b = getattr(whole, name), getattr(chunked, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert (chunked.width, chunked.bs, chunked.sym, chunked.src_nbytes) == (whole.width, whole.bs, whole.sym,
                                                                          whole.src_nbytes)
