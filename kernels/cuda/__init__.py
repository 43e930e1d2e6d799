"""CUDA mirrors of the CPU kernels, in numba.cuda (the numba-cuda package).

Each module mirrors its CPU twin in kernels/ and is tested against it under
NUMBA_ENABLE_CUDASIM=1. Launch geometry lives in kernels.cuda.launch only.
"""
