"""Session-wide test setup.

CUDA kernels are tested under numba's simulator (NUMBA_ENABLE_CUDASIM=1) on machines without
an NVIDIA GPU; with one, the same tests run on the device. The variable must be set before
numba.cuda is first imported, hence here. Servers the tests start inherit it, and the
simulator is never picked by `-ngl auto` (see kernels.cuda.launch.has_gpu).
"""

import os

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not os.path.exists("/dev/nvidia0"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
