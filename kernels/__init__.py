"""llamajit's Numba kernels: GGML dequantization, quantized matmul, transformer ops.

Import order matters: `_jit` sets Numba's options (SLP vectorizer on) before any kernel
module compiles, so it is imported first.
"""

from kernels import _jit  # noqa: F401  (must come first)
from kernels.dequant import dequantize, supported_types
from kernels.matmul import Activations, PackedMatrix, matmul, pack

__all__ = ["Activations", "PackedMatrix", "dequantize", "matmul", "pack", "supported_types"]
