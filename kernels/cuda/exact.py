"""Rounded float32 products that the compiler may not fuse into an FMA.

Why: NVVM contracts a * b + c into one fused multiply-add (one rounding) even without fast
math, while gguf's NumPy dequantization rounds the product and the sum separately. The
dequantization kernels must match it bit for bit, so their products go through mul(), which
on a real GPU is libdevice's __nv_fmul_rn (never contracted). The simulator is NumPy, where
a * b is already rounded on its own.
"""

from kernels._jit import cuda_exact_device
from kernels.cuda.launch import simulated

if simulated():

    @cuda_exact_device
    def mul(a, b):
        """float32 a * b, rounded to nearest."""
        return a * b

else:
    from numba.cuda import libdevice

    mul = libdevice.fmul_rn
