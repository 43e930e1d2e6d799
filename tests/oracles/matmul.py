"""y = x @ W.T with W = gguf.quants.dequantize(data), in float64, and the error bound of the int8 kernels.

Tolerance, a proven bound rather than a guess: activations are quantized to int8 per
32 values with step dx = amax / 127, so each value's error is at most dx / 2 and a block's
error vector e_b has ||e_b|| <= sqrt(32) * amax / 254 <= 0.0223 ||x_b||. By Cauchy-Schwarz
|y_err[t, i]| <= ||w_i|| * ||e_t|| <= 0.0223 * ||w_i|| * ||x_t||. Scales stored as float16 add
at most 2^-11 relative per weight (5e-4). We assert |err| <= 0.025 ||w_i|| ||x_t||; typical
errors are ten times smaller (about 0.5% of max |y|, as llama.cpp's Q8 activations give).
Float weights are summed in float32: 1e-5 of the same scale.
"""

import numpy as np
from gguf.quants import dequantize

from tests.oracles.quant_blocks import FLOATS


def dequantized(data, qtype) -> np.ndarray:
    """W (n, k) float64 from GGUF rows (n, row_bytes)."""
    return dequantize(data, qtype).reshape(data.shape[0], -1).astype(np.float64)


def check_matmul(y, data, qtype, x):
    """Assert the error bound of the module docstring, element by element."""
    w = dequantized(data, qtype)
    ref = x.astype(np.float64) @ w.T
    scale = np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w, axis=1)[None, :]
    tol = 1e-5 if qtype in FLOATS else 0.025
    assert np.all(np.abs(y - ref) <= tol * scale + 1e-30), np.max(np.abs(y - ref) / (scale + 1e-30))
