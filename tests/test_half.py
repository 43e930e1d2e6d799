"""kernels/half.py: the half <-> float32 intrinsics against NumPy's float16, exhaustively for halves."""

import numba
import numpy as np

from kernels.half import f32_to_half, half_to_f32


@numba.njit(cache=False)
def _to_f32(out, h):
    for i in range(h.shape[0]):
        out[i] = half_to_f32(h[i])


@numba.njit(cache=False)
def _to_half(out, x):
    for i in range(x.shape[0]):
        out[i] = f32_to_half(x[i])


def test_every_half_widens_exactly():
    h = np.arange(65536, dtype=np.uint16)
    got = np.empty(65536, np.float32)
    _to_f32(got, h)
    want = h.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])


def _finite_halves():
    h = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    return h[np.isfinite(h)]


def test_floats_round_to_nearest_even_halves():
    """Every finite half and its float32 neighbours (the ties and the roundings next to them),
    random floats over the subnormal to overflow range. NaNs: only that they stay NaN (NumPy
    keeps a signalling NaN's payload bits, the hardware quiets it)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([
        (rng.standard_normal(200_000) * 10.0 ** rng.uniform(-9, 5, 200_000)).astype(np.float32),
        _finite_halves(),
        np.array([65504, 65519.99, 65520, 1e10, -1e10, 2.0**-25, 2.0**-25 * 1.0001, 2.0**-26, -0.0], np.float32),
    ])
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])
    x = x.astype(np.float32)
    got = np.empty(x.shape[0], np.uint16)
    _to_half(got, x)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got, x.astype(np.float16).view(np.uint16))
    nan = np.array([np.nan, -np.nan], np.float32)
    out = np.empty(2, np.uint16)
    _to_half(out, nan)
    assert np.isnan(out.view(np.float16)).all()
