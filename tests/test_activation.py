"""kernels/activation.py: SiLU, GELU (tanh), SwiGLU, GeGLU and softmax against their float64 oracles.

Tolerances, and why: one exp (4e-7) plus a handful of float32 roundings (6e-8 each): rtol
2e-6. GELU's oracle is the tanh form, which loses relative precision in float64 where
1 + tanh(u) underflows, so it also gets atol 1e-12 (its values there are below 1e-15).
Softmax also rounds x - max to float32 first, which moves exp's argument by up to
6e-8 * |x - max|: rtol 2e-6 + 6e-8 * |x - max|. In-place calls run other loops than
out-of-place ones, with the same arithmetic: equal.
"""

import numpy as np
from hypothesis import given, settings, strategies as st

from kernels import activation as A
from tests.oracles import ops as O
from tests.oracles.ops import f32_normal as _f32

SETTINGS = settings(deadline=None, max_examples=25)


@SETTINGS
@given(n_rows=st.integers(1, 5), n=st.integers(1, 300), scale=st.sampled_from([0.1, 3.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_activations(n_rows, n, scale, seed):
    rng = np.random.default_rng(seed)
    g = _f32(rng, n_rows, n, scale=scale)
    u = _f32(rng, n_rows, n)
    out = np.empty_like(g)
    A.silu(out, g)
    np.testing.assert_allclose(out, O.silu(g), rtol=2e-6, atol=1e-30)
    A.gelu_tanh(out, g)
    np.testing.assert_allclose(out, O.gelu_tanh(g), rtol=2e-6, atol=1e-12)
    A.swiglu(out, g, u)
    np.testing.assert_allclose(out, O.swiglu(g, u), rtol=2e-6, atol=1e-30)
    A.geglu(out, g, u)
    np.testing.assert_allclose(out, O.geglu(g, u), rtol=2e-6, atol=1e-12)
    A.softmax(out, g)
    # x - max is rounded to float32 first: exp's argument is off by up to 6e-8 * |x - max|.
    ref = O.softmax(g)
    spread = g.max(axis=1, keepdims=True) - g.astype(np.float64)
    assert np.all(np.abs(out - ref) <= (2e-6 + 6e-8 * spread) * ref + 1e-30)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_activations_in_place_equal_out_of_place():
    rng = np.random.default_rng(4)
    g, u = _f32(rng, 3, 1000, scale=4.0), _f32(rng, 3, 1000)
    for fn in (A.silu, A.gelu_tanh, A.softmax):
        ref = np.empty_like(g)
        fn(ref, g)
        y = g.copy()
        fn(y, y)
        np.testing.assert_array_equal(y, ref)
    for fn in (A.swiglu, A.geglu):
        ref = np.empty_like(g)
        fn(ref, g, u)
        y, w = g.copy(), u.copy()
        fn(y, y, u)  # out is gate
        fn(w, g, w)  # out is up
        np.testing.assert_array_equal(y, ref)
        np.testing.assert_array_equal(w, ref)


def test_activations_extremes():
    x = np.float32([[-1e4, -90.0, -20.0, -1.0, 0.0, 1.0, 20.0, 90.0, 1e4]])
    for fn, ref in ((A.silu, O.silu), (A.gelu_tanh, O.gelu_tanh)):
        y = np.empty_like(x)
        fn(y, x)
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y, ref(x), rtol=2e-6, atol=1e-12)
    s = np.float32([[1e4, 0.0, -1e4, 1e4]])  # huge spread: no overflow, ties split evenly
    A.softmax(s, s)
    np.testing.assert_allclose(s, [[0.5, 0.0, 0.0, 0.5]], atol=1e-30)


def test_row_max_over_every_tail_length():
    """Eight running maxima, then a tail of 0 to 7: the maximum wherever it sits, -inf included."""
    rng = np.random.default_rng(5)
    for n in range(1, 40):
        x = _f32(rng, n)
        x[rng.integers(0, n)] = -np.inf
        for where in {0, n // 2, n - 1}:
            y = x.copy()
            y[where] = 50.0
            assert A.row_max(y) == 50.0
        assert A.row_max(x) == x.max()


def test_swiglu_oai_against_oracle():
    """gpt-oss's activation: min(g, 7) * sigmoid(1.702 min(g, 7)) * (clamp(u, -7, 7) + 1), in place too."""
    rng = np.random.default_rng(3)
    g, u = (rng.standard_normal((5, 40)) * 6).astype(np.float32), (rng.standard_normal((5, 40)) * 6).astype(np.float32)
    x, y = np.minimum(g.astype(np.float64), 7), np.clip(u.astype(np.float64), -7, 7)
    want = x / (1 + np.exp(-1.702 * x)) * (y + 1)
    out = np.empty_like(g)
    A.swiglu_oai(out, g, u, 1.702, 7.0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    A.swiglu_oai(g, g, u, 1.702, 7.0)  # in place (the vectorized loop may round its exp otherwise)
    np.testing.assert_allclose(g, out, rtol=1e-6, atol=1e-6)
