"""Activations over rows of float32 (n_rows, n): SiLU, GELU (tanh form), SwiGLU, GeGLU, softmax.

All exps go through kernels.fastexp.fast_exp (relative error <= 4e-7, vectorizes), so every
function here stays within a few float32 ulps plus that bound of the exact value.

Outputs may be one of the inputs (in place) or disjoint from them, not partly overlapping.
In-place calls get their own loops: LLVM vectorizes a loop over two arrays only behind a
runtime check that they do not overlap, and an in-place call fails it and runs scalar
(measured 2.5 ns instead of 0.4 ns per element for SiLU).
"""

import numpy as np
from numba import prange

from ._jit import kernel, parallel_kernel
from .fastexp import fast_exp

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
# gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3):
# the sigmoid form needs one exp and has no cancellation near 0 or overflow for large |x|.
_GELU_2C = np.float32(2.0 * np.sqrt(2.0 / np.pi))  # 2 * sqrt(2/pi)
_GELU_A = np.float32(0.044715)


@kernel
def same(a, b):
    """True when arrays a and b start at the same address (an in-place call)."""
    return a.ctypes.data == b.ctypes.data


@kernel
def _silu1(x):
    """x * sigmoid(x) for a float32 scalar."""
    return x / (_ONE + fast_exp(-x))


@kernel
def _gelu1(x):
    """gelu_tanh(x) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)) for a float32 scalar."""
    return x / (_ONE + fast_exp(-_GELU_2C * x * (_ONE + _GELU_A * x * x)))


@kernel
def row_max(x):
    """max of x (n,), n >= 1; eight running maxima, since one max chain does not vectorize."""
    n = x.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = x[0]
    j = 0
    while j + 8 <= n:
        m0 = max(m0, x[j])
        m1 = max(m1, x[j + 1])
        m2 = max(m2, x[j + 2])
        m3 = max(m3, x[j + 3])
        m4 = max(m4, x[j + 4])
        m5 = max(m5, x[j + 5])
        m6 = max(m6, x[j + 6])
        m7 = max(m7, x[j + 7])
        j += 8
    while j < n:
        m0 = max(m0, x[j])
        j += 1
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@kernel
def exp_shifted(x, m):
    """x (n,) = exp(x - m) in place; returns the sum (float32)."""
    total = _ZERO
    for j in range(x.shape[0]):
        e = fast_exp(x[j] - m)
        x[j] = e
        total += e
    return total


# One loop per activation and aliasing case (a flag or a function argument would leave a
# branch in the loop, or, passed as a function, stop Numba from caching the callers).
@kernel
def _silu_row(o, x):
    """o (n,) = silu(x); o may be x."""
    if same(o, x):
        for i in range(o.shape[0]):
            o[i] = _silu1(o[i])
    else:
        for i in range(x.shape[0]):
            o[i] = _silu1(x[i])


@kernel
def _gelu_row(o, x):
    """o (n,) = gelu_tanh(x); o may be x."""
    if same(o, x):
        for i in range(o.shape[0]):
            o[i] = _gelu1(o[i])
    else:
        for i in range(x.shape[0]):
            o[i] = _gelu1(x[i])


@kernel
def _swiglu_row(o, g, u):
    """o (n,) = silu(g) * u; o may be g or u."""
    if same(o, g):
        for i in range(o.shape[0]):
            o[i] = _silu1(o[i]) * u[i]
    elif same(o, u):
        for i in range(o.shape[0]):
            o[i] = _silu1(g[i]) * o[i]
    else:
        for i in range(g.shape[0]):
            o[i] = _silu1(g[i]) * u[i]


@kernel
def _geglu_row(o, g, u):
    """o (n,) = gelu_tanh(g) * u; o may be g or u."""
    if same(o, g):
        for i in range(o.shape[0]):
            o[i] = _gelu1(o[i]) * u[i]
    elif same(o, u):
        for i in range(o.shape[0]):
            o[i] = _gelu1(g[i]) * o[i]
    else:
        for i in range(g.shape[0]):
            o[i] = _gelu1(g[i]) * u[i]


@parallel_kernel
def silu(out, x):
    """out (n_rows, n) = x * sigmoid(x), elementwise; out may be x."""
    for r in prange(x.shape[0]):  # rows are independent outputs
        _silu_row(out[r], x[r])


@parallel_kernel
def gelu_tanh(out, x):
    """out (n_rows, n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); out may be x."""
    for r in prange(x.shape[0]):
        _gelu_row(out[r], x[r])


@parallel_kernel
def swiglu(out, gate, up):
    """out (n_rows, n) = silu(gate) * up, elementwise; out may be gate or up."""
    for r in prange(gate.shape[0]):
        _swiglu_row(out[r], gate[r], up[r])


@kernel
def swiglu_oai(out, gate, up, alpha, limit):
    """out (n_rows, n) = g * sigmoid(alpha g) * (u + 1), g = min(gate, limit), u = clamp(up, -limit, limit):
    gpt-oss's activation (ggml's swiglu_oai, alpha 1.702 and limit 7 there); out may be gate or up."""
    a, lim = np.float32(alpha), np.float32(limit)
    for r in range(gate.shape[0]):
        for i in range(gate.shape[1]):
            g = min(gate[r, i], lim)
            u = min(max(up[r, i], -lim), lim)
            out[r, i] = g / (_ONE + np.exp(-a * g)) * (u + _ONE)


@parallel_kernel
def geglu(out, gate, up):
    """out (n_rows, n) = gelu_tanh(gate) * up, elementwise; out may be gate or up."""
    for r in prange(gate.shape[0]):
        _geglu_row(out[r], gate[r], up[r])


@kernel
def softmax_row(out, x):
    """out (n,) = exp(x - max x) / sum(exp(x - max x)); n >= 1; out may be x."""
    m = row_max(x)
    if not same(out, x):
        for i in range(x.shape[0]):
            out[i] = x[i]
    inv = _ONE / exp_shifted(out, m)  # the sum is >= 1: the max element contributes exp(0)
    for i in range(out.shape[0]):
        out[i] *= inv


@parallel_kernel
def softmax(out, x):
    """out (n_rows, n) = row-wise softmax of x (n_rows, n), max-subtracted; out may be x."""
    for r in prange(x.shape[0]):
        softmax_row(out[r], x[r])
