"""kernels/_jit.py: the jit options every kernel gets, and the CPU-feature test that picks dpbusd's path.

What the options promise, checked on behaviour: exact kernels keep IEEE rounding (a * b - c
rounds twice: no FMA contraction), every CPU kernel is cached, the SLP vectorizer is on.
"""

import numpy as np
import pytest
from numba.core import config

from kernels import _jit

ONE = np.float32(1 + 2**-12)  # ONE * ONE = 1 + 2^-11 + 2^-24: the last term is lost when rounded


def _mul_sub(a, b, c):
    return a * b - c


def test_exact_kernels_round_each_product():
    """Rounded separately the product loses 2^-24 and the difference is 0; an FMA would keep it."""
    f = _jit.exact_kernel(_mul_sub)
    assert f(ONE, ONE, np.float32(1 + 2**-11)) == 0.0
    assert f.targetoptions["fastmath"] is False and _jit.parallel_exact_kernel(_mul_sub).targetoptions["parallel"]


@pytest.mark.parametrize("decorator,fastmath,parallel", [
    (_jit.kernel, True, False), (_jit.parallel_kernel, True, True), (_jit.inline_kernel, True, False),
    (_jit.exact_kernel, False, False), (_jit.parallel_exact_kernel, False, True),
])
def test_options(decorator, fastmath, parallel):
    opts = decorator(_mul_sub).targetoptions
    assert bool(opts.get("fastmath")) == fastmath and bool(opts.get("parallel")) == parallel
    assert opts["nogil"] and opts["boundscheck"] is False and opts["error_model"] == "numpy"
    assert decorator(_mul_sub)._cache.__class__.__name__ != "NullCache"  # cache=True


def test_slp_vectorizer_is_on():
    assert config.SLP_VECTORIZE


@pytest.mark.parametrize("features,vnni", [
    ("+avx512f,+avx512bw,+avx512vnni", True),
    ("+avx512f,-avx512bw,+avx512vnni", False),  # VNNI on zmm needs AVX-512 BW too
    ("+avx512bw,-avx512vnni,+avxvnni", False),  # the 256-bit AVX-VNNI is not the zmm instruction
    ("", False),
])
def test_vnni_needs_both_features(features, vnni, monkeypatch):
    monkeypatch.setattr(_jit, "cpu_features", lambda: features)
    assert _jit.has_vnni512() is vnni
