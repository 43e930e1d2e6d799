"""Elementwise kernels on the device: gated activations and the small glue of a layer.

Twins of kernels.activation (swiglu, geglu) plus what the CPU layer and head do with NumPy:
adding biases, softcapping logits, gathering the rows whose logits are wanted. One thread
per element; 2-D arrays may be strided column slices. (The residual adds live with the
norms in kernels.cuda.norm, the Q/K/V split in kernels.cuda.heads.)
"""

import math

import numpy as np
from numba import cuda

from kernels._jit import cuda_kernel
from kernels.cuda import launch

_GELU_2C = np.float32(2.0 * np.sqrt(2.0 / np.pi))  # gelu_tanh(x) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))
_GELU_A = np.float32(0.044715)


@cuda_kernel
def _glu(out, gate, up, gelu):
    """out (T, n) = act(gate) * up with act = gelu_tanh (gelu) or silu; out may alias gate or up."""
    idx = cuda.grid(1)
    n = gate.shape[1]
    if idx >= gate.shape[0] * n:
        return
    t, i = idx // n, idx % n
    g = gate[t, i]
    if gelu:
        a = g / (np.float32(1.0) + math.exp(-_GELU_2C * g * (np.float32(1.0) + _GELU_A * g * g)))
    else:
        a = g / (np.float32(1.0) + math.exp(-g))
    out[t, i] = a * up[t, i]


@cuda_kernel
def _add_bias(out, vec):
    """out (T, n) += vec (n,) on every row."""
    idx = cuda.grid(1)
    n = out.shape[1]
    if idx < out.shape[0] * n:
        out[idx // n, idx % n] += vec[idx % n]


@cuda_kernel
def _scale_cap(out, x, scale, cap):
    """out (T, n) = x * scale, then cap * tanh(out / cap) when cap > 0; out may be x."""
    idx = cuda.grid(1)
    n = x.shape[1]
    if idx >= x.shape[0] * n:
        return
    t, i = idx // n, idx % n
    v = x[t, i] * scale
    if cap > 0:
        v = cap * math.tanh(v / cap)
    out[t, i] = v


@cuda_kernel
def _gather(out, x, rows):
    """out (R, n) = x[rows] for rows (R,) int64: the tokens whose logits are wanted."""
    idx = cuda.grid(1)
    n = out.shape[1]
    if idx < out.shape[0] * n:
        out[idx // n, idx % n] = x[rows[idx // n], idx % n]


def swiglu(out, gate, up) -> None:
    grid, block = launch.elementwise(gate.shape[0] * gate.shape[1])
    _glu[grid, block](out, gate, up, False)


def geglu(out, gate, up) -> None:
    grid, block = launch.elementwise(gate.shape[0] * gate.shape[1])
    _glu[grid, block](out, gate, up, True)


def add_bias(out, vec) -> None:
    """out (T, n) += vec (n,) on every row."""
    grid, block = launch.elementwise(out.shape[0] * out.shape[1])
    _add_bias[grid, block](out, vec)


def scale_cap(out, x, scale: float, cap: float = 0.0) -> None:
    """out = x * scale, softcapped by cap when cap > 0."""
    grid, block = launch.elementwise(x.shape[0] * x.shape[1])
    _scale_cap[grid, block](out, x, np.float32(scale), np.float32(cap))


def gather_rows(out, x, rows) -> None:
    """out (R, n) = x[rows]; rows a device int64 array (R,)."""
    grid, block = launch.elementwise(out.shape[0] * out.shape[1])
    _gather[grid, block](out, x, rows)
