"""kernels/fastexp.py: fast_exp, fast_sigmoid and fast_tanh against float64 NumPy.

Tolerances, and why: fast_exp's relative error is <= 4e-7 (a few float32 ulps; the bound its
docstring states); the sigmoid adds one division (1e-6 relative), tanh's absolute error
stays at the exp's (5e-7).
"""

import numpy as np

from kernels._jit import kernel
from kernels.fastexp import fast_exp, fast_sigmoid, fast_tanh


@kernel
def _map_exp(out, x, which):
    """out = fast_exp / fast_sigmoid / fast_tanh (which = 0 / 1 / 2) of x, elementwise."""
    for i in range(x.shape[0]):
        if which == 0:
            out[i] = fast_exp(x[i])
        elif which == 1:
            out[i] = fast_sigmoid(x[i])
        else:
            out[i] = fast_tanh(x[i])


def _map(x, which):
    out = np.empty_like(x)
    _map_exp(out, x, which)
    return out


def test_fast_exp_relative_error_bound():
    # Every 331st float32 bit pattern in [0, 88] and in [-87, 0]: about 6.7 million values.
    pos = np.arange(0, np.float32(88.0).view(np.int32), 331, dtype=np.int32).view(np.float32)
    neg = -np.arange(0, np.float32(87.0).view(np.int32), 331, dtype=np.int32).view(np.float32)
    x = np.concatenate([neg, pos, np.float32([-87.0, 88.0, 0.0, 1e-30, -1e-30])])
    rel = np.abs(_map(x, 0) - np.exp(x.astype(np.float64))) / np.exp(x.astype(np.float64))
    assert rel.max() <= 4e-7, (rel.max(), x[rel.argmax()])
    assert _map(np.float32([0.0]), 0)[0] == 1.0  # exact: a query seeing one key gets p = 1


def test_fast_exp_clamps_instead_of_overflowing():
    y = _map(np.float32([-1e4, -100.0, 100.0, 1e4]), 0)
    assert np.all(np.isfinite(y)) and y[0] < 2e-38 and y[1] < 2e-38 and y[2] > 1e38


def test_fast_sigmoid_and_tanh():
    x = np.linspace(-60, 60, 200_001, dtype=np.float32)
    x64 = x.astype(np.float64)
    sig = 1.0 / (1.0 + np.exp(-x64))
    assert np.max(np.abs(_map(x, 1) - sig) / sig) <= 1e-6
    assert np.max(np.abs(_map(x, 2) - np.tanh(x64))) <= 5e-7
    t = _map(np.float32([-0.0, 0.0, 1e-8, -1e-8]), 2)
    assert np.all(np.abs(t) <= 1e-6)
