"""The one place where Numba jit options live.

Every kernel module imports its decorators from here, so the options that decide speed
(SLP vectorizer on, fastmath where rounding may change, cache=True) are set once.
This module must be imported before anything compiles: kernels/__init__.py does it first.
"""

import os

# Numba turns LLVM's SLP vectorizer off by default; short per-block loops then stay
# scalar (4-6x slower quantized dots, measured). It is read when numba is imported,
# and again per compilation through numba.core.config below.
os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")

import numba  # noqa: E402
from numba.core import config  # noqa: E402

if not config.SLP_VECTORIZE:  # numba was imported before us: set it for later compiles
    config.SLP_VECTORIZE = 1

# Float kernels: fastmath lets LLVM reassociate reductions into SIMD lanes.
_FAST = dict(cache=True, nogil=True, fastmath=True, error_model="numpy", boundscheck=False)
# Bit-exact kernels (dequantization): no fastmath, so no FMA contraction or reassociation;
# results must equal gguf.quants.dequantize bit for bit.
_EXACT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy", boundscheck=False)


def kernel(fn):
    """Serial float kernel."""
    return numba.njit(**_FAST)(fn)


def parallel_kernel(fn):
    """Float kernel whose prange loops run over outputs."""
    return numba.njit(parallel=True, **_FAST)(fn)


def inline_kernel(fn):
    """Float helper inlined into its callers at Numba IR level (SIMD building blocks)."""
    return numba.njit(inline="always", **_FAST)(fn)


def exact_kernel(fn):
    """Serial kernel with IEEE semantics (no fastmath)."""
    return numba.njit(**_EXACT)(fn)


def parallel_exact_kernel(fn):
    """Parallel kernel with IEEE semantics (no fastmath)."""
    return numba.njit(parallel=True, **_EXACT)(fn)


def cpu_features() -> str:
    """The LLVM feature string Numba compiles for (host, or NUMBA_CPU_NAME/FEATURES)."""
    from numba.core.registry import cpu_target

    return cpu_target.target_context.codegen()._tm_features


def has_vnni512() -> bool:
    """True when compiled code may use AVX-512 VNNI (vpdpbusd on zmm registers)."""
    feats = cpu_features().split(",")
    return "+avx512vnni" in feats and "+avx512bw" in feats


# CUDA kernels (numba-cuda). numba.cuda is imported on first use, so the CPU path never loads
# the CUDA bindings. Under NUMBA_ENABLE_CUDASIM=1 the same decorators give simulator kernels.
# Exact kernels (dequantization) keep IEEE rounding; NVVM still contracts a * b + c into an FMA
# unless fastmath is off AND the product goes through kernels.cuda.exact.mul (see there).
_CUDA_FAST = dict(fastmath=True, cache=True)
_CUDA_EXACT = dict(fastmath=False, cache=True)


def cuda_kernel(fn):
    """CUDA float kernel (fast math: approximate exp/div, FMA contraction)."""
    from numba import cuda

    return cuda.jit(**_CUDA_FAST)(fn)


def cuda_exact_kernel(fn):
    """CUDA kernel with IEEE semantics (bit-exact dequantization)."""
    from numba import cuda

    return cuda.jit(**_CUDA_EXACT)(fn)


def cuda_device(fn):
    """CUDA device function for float kernels."""
    from numba import cuda

    return cuda.jit(device=True, **_CUDA_FAST)(fn)


def cuda_exact_device(fn):
    """CUDA device function with IEEE semantics."""
    from numba import cuda

    return cuda.jit(device=True, **_CUDA_EXACT)(fn)
