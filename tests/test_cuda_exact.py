"""kernels/cuda/exact.py: mul() is a float32 product rounded on its own, never fused into an FMA.

Under the simulator (tests/conftest.py) mul is NumPy's product; on a GPU, libdevice's
__nv_fmul_rn. Both must round a * b to nearest, so that mul(a, b) - c rounds twice as
gguf's NumPy does: for a = b = 1 + 2^-12 and c = 1 + 2^-11 that is exactly 0, while an FMA
gives 2^-24. A subprocess with the simulator off checks which function the GPU build gets
and that its product reaches the IR as that call (tests/test_cuda_compile.py checks every
exact kernel's PTX where NVVM is installed).
"""

import os
import subprocess
import sys

import numpy as np
from numba import cuda

from kernels.cuda.exact import mul
from tests.oracles.cuda import dev, host


@cuda.jit(fastmath=False)
def _mul_sub(prod, diff, a, b, c):
    i = cuda.grid(1)
    if i < a.shape[0]:
        prod[i] = mul(a[i], b[i])
        diff[i] = mul(a[i], b[i]) - c[i]


def _run(a, b, c):
    prod, diff = dev(np.zeros_like(a)), dev(np.zeros_like(a))
    _mul_sub[(a.size + 31) // 32, 32](prod, diff, dev(a), dev(b), dev(c))
    return host(prod), host(diff)


def test_products_round_to_nearest_and_are_not_fused():
    rng = np.random.default_rng(8)
    a = np.concatenate([rng.standard_normal(200) * 10.0 ** rng.integers(-20, 20, 200),
                        [1 + 2**-12, 1e-20, 3e38, -0.0, 1.5]]).astype(np.float32)
    b = np.concatenate([rng.standard_normal(200), [1 + 2**-12, 1e-20, 1.1, 5.0, 2**-140]]).astype(np.float32)
    c = np.concatenate([rng.standard_normal(200), [1 + 2**-11, 0.0, 0.0, 0.0, 0.0]]).astype(np.float32)
    prod, diff = _run(a, b, c)
    with np.errstate(under="ignore"):
        np.testing.assert_array_equal(prod.view(np.uint32), (a * b).view(np.uint32))  # subnormal, 0, -0 too
        np.testing.assert_array_equal(diff.view(np.uint32), (a * b - c).view(np.uint32))
    assert diff[200] == 0.0  # fused, it would be 2^-24


GPU_BUILD = """
from numba import cuda, types
from numba.cuda import libdevice
from kernels.cuda import exact
from tests.cuda_ir import _fake_device, lower
assert exact.mul is libdevice.fmul_rn, exact.mul
@cuda.jit(fastmath=False)
def k(out, a, b, c):
    out[0] = exact.mul(a[0], b[0]) - c[0]
_fake_device((9, 0))
arr = types.Array(types.float32, 1, "C")
ir = lower(k, (arr,) * 4, (9, 0))[0].get_llvm_str()
assert 'call float @"__nv_fmul_rn"' in ir and "fmul float" not in ir, ir
print("gpu build ok")
"""


def test_the_gpu_build_calls_libdevice_fmul_rn():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-c", GPU_BUILD], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "gpu build ok" in out.stdout, out.stderr[-3000:]
