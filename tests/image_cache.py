"""The Dockerfile's precompile step (python -m service.precompile MODEL) with the image's
environment (its NUMBA_CPU_NAME / NUMBA_CPU_FEATURES), into a cache directory of its own, for
tests/test_k8s.py's check that a copied cache is reused.

That first run compiles every serving kernel for the image's CPU target (about 95 s on one core),
one core's work. tests/conftest.py starts it in the background at session start, beside the
session's own precompile for this machine (also one core's work), and the test collects it when it
gets there; run alone, the test starts it itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TIMEOUT = 1100


def command() -> list[str]:
    """The Dockerfile's precompile step, on the local model."""
    m = re.search(r"^\s*python -m service\.precompile (\S+)$", DOCKERFILE, re.M)
    assert m, "precompile step not found in the Dockerfile"
    return [sys.executable, "-m", "service.precompile", m.group(1).replace("/tmp/models/", f"{MODEL.parent}/")]


def env(cache: Path) -> dict[str, str]:
    """The image's Numba settings, with the cache at `cache` and its loads and saves logged."""
    cpu = re.search(r"^ARG NUMBA_CPU_NAME=(\S+)$", DOCKERFILE, re.M).group(1)
    feats = re.search(r'^ARG NUMBA_CPU_FEATURES="(.*)"$', DOCKERFILE, re.M).group(1)
    return os.environ | {"NUMBA_CACHE_DIR": str(cache), "NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": feats,
                         "NUMBA_SLP_VECTORIZE": "1", "NUMBA_DEBUG_CACHE": "1"}


class Run:
    """One precompile run into `cache`, its output in a file beside it."""

    def __init__(self, cache: Path):
        self.cache = cache
        self._out = open(cache.parent / (cache.name + ".log"), "w+")  # noqa: SIM115 (read in result())
        self.proc = subprocess.Popen(command(), cwd=ROOT, env=env(cache), stdout=self._out,
                                     stderr=subprocess.STDOUT, text=True)

    def result(self) -> tuple[int, str]:
        """Its exit status and output (waits for it)."""
        rc = self.proc.wait(TIMEOUT)
        self._out.seek(0)
        return rc, self._out.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


_background: Run | None = None


def start_background() -> None:
    """Start the image-target precompile now (tests/conftest.py, at session start)."""
    global _background
    if MODEL.exists() and _background is None:
        _background = Run(Path(tempfile.mkdtemp(prefix="llamajit-image-cache-")) / "image")


def take(tmp: Path) -> Run:
    """The background run when there is one (it is handed over once), else a new run into tmp."""
    global _background
    run, _background = _background, None
    return run if run is not None else Run(tmp / "image")


def stop_background() -> None:
    """At session end: a run no test took is stopped and its directory removed."""
    global _background
    if _background is not None:
        _background.stop()
        shutil.rmtree(_background.cache.parent, ignore_errors=True)
        _background = None
