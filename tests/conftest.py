"""Session-wide test setup.

CUDA kernels are tested under numba's simulator (NUMBA_ENABLE_CUDASIM=1) on machines without
an NVIDIA GPU; with one, the same tests run on the device. The variable must be set before
numba.cuda is first imported, hence here. Servers the tests start inherit it, and the
simulator is never picked by `-ngl auto` (see kernels.cuda.launch.has_gpu).
"""

import os

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not os.path.exists("/dev/nvidia0"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"


def pytest_sessionstart(session):
    """Compile the serving kernels in a subprocess before any test does (service/precompile.py),
    so that this process and every server it starts load the same machine code from Numba's
    cache: tests that compare a server's numbers with an in-process forward pass need that (a
    kernel compiled in-process rounds differently from its cached object code). Skipped when the
    default model is absent (then those tests skip too) and in pytest-xdist workers."""
    import subprocess
    import sys
    from pathlib import Path

    model = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not model.exists() or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if _runs_test_k8s(session.config):  # one core's work beside this one's: see tests/image_cache.py
        from tests import image_cache

        image_cache.start_background()
    r = subprocess.run([sys.executable, "-m", "service.precompile", str(model)], capture_output=True, text=True,
                       timeout=1200)
    if r.returncode != 0:  # the model does not load: the tests that load it fail and say why, one by one
        sys.stderr.write(f"conftest: service.precompile failed (exit {r.returncode}):\n{r.stderr[-2000:]}\n")


def _runs_test_k8s(config) -> bool:
    """Whether the session's paths take in tests/test_k8s.py (the whole suite, or that file)."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    paths = [Path(a.split("::")[0]).resolve() for a in config.args] or [here]
    return any(p == here / "test_k8s.py" or p in (here, here.parent) for p in paths)


def pytest_sessionfinish(session, exitstatus):
    """A background precompile no test took (a -k filter, a failure before it) is stopped."""
    import sys

    if "tests.image_cache" in sys.modules:
        sys.modules["tests.image_cache"].stop_background()
