"""The container image, as far as a pod started without Docker needs it (tests/kubelet.py).

`Image` reads what the Dockerfile's runtime stage gives every container: ENV, WORKDIR,
STOPSIGNAL and the user's home. `build_rootfs` lays out the image's filesystem in a folder:
/opt/venv is the checkout's .venv (which holds the `llama-server` console script), /usr and
/bin are this machine's (cp, sleep), /opt/llamajit/numba-cache holds the kernels the image
build precompiles (here the checkout's own Numba cache, laid out as under a NUMBA_CACHE_DIR,
for this machine's CPU; the Dockerfile's precompile step fills it first in a checkout that has
none) and /models the model that BAKE_MODEL=1 bakes in.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BASE_IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # python:3.11-slim
# The image pins Numba's CPU target; the checkout's cache that stands in for the image's was
# compiled for this machine's CPU, and a pinned target would make the server compile it all again.
HOST_TARGET_ONLY = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")


@dataclass
class Image:
    """What the runtime stage of the Dockerfile gives a container: ENV, WORKDIR, STOPSIGNAL, user's home."""
    env: dict[str, str]
    workdir: str
    stop_signal: signal.Signals
    home: str

    @classmethod
    def from_dockerfile(cls, path: Path = DOCKERFILE) -> "Image":
        text = re.sub(r"\\\n", " ", path.read_text())
        stage = text[re.search(r"^FROM \S+ AS runtime$", text, re.M).end():]
        args = {m[0]: m[1].strip('"') for m in re.findall(r"^ARG (\w+)=(.*)$", stage, re.M)}
        env: dict[str, str] = {"PATH": BASE_IMAGE_PATH}
        for line in re.findall(r"^ENV (.+)$", stage, re.M):
            for item in shlex.split(line):
                k, v = item.split("=", 1)
                env[k] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], args.get(m[1], "")), v)
        for k in HOST_TARGET_ONLY:
            env.pop(k, None)
        home = re.search(r"--home-dir (\S+)", stage)[1]
        return cls(env, re.findall(r"^WORKDIR (\S+)$", stage, re.M)[-1],
                   signal.Signals[re.findall(r"^STOPSIGNAL (\w+)$", stage, re.M)[-1]], home)


def build_rootfs(dest: Path, model: Path | None, model_path: str = "/models/SmolLM2-135M-Instruct.Q4_1.gguf") -> Path:
    """The image's filesystem in `dest`, with `model` at model_path when given (BAKE_MODEL=1)."""
    (dest / "opt" / "llamajit").mkdir(parents=True)
    (dest / "tmp").mkdir()
    (dest / "opt" / "venv").symlink_to(ROOT / ".venv")
    for d in ("usr", "bin"):
        (dest / d).symlink_to(f"/{d}")
    numba_cache(dest / "opt" / "llamajit" / "numba-cache")
    if model is not None:
        baked = dest / model_path.lstrip("/")
        baked.parent.mkdir(parents=True)
        baked.symlink_to(model)
    return dest


def numba_cache(dest: Path) -> None:
    """The checkout's in-tree Numba cache (<package>/__pycache__/*.nbi|nbc), laid out as Numba lays
    out a NUMBA_CACHE_DIR (one <folder>_<sha1 of the source folder> per source folder): what the
    image's precompile step leaves in /opt/llamajit/numba-cache, for this machine's CPU."""
    from numba.core.caching import UserProvidedCacheLocator

    if not any((ROOT / "kernels").rglob("*.nbi")):
        precompile_in_tree()
    for pycache in [*(ROOT / "kernels").rglob("__pycache__"), *(ROOT / "service").rglob("__pycache__")]:
        files = [*pycache.glob("*.nbi"), *pycache.glob("*.nbc")]
        if files:
            sub = dest / UserProvidedCacheLocator.get_suitable_cache_subpath(str(pycache.parent / "_.py"))
            sub.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy2(f, sub / f.name)


def precompile_in_tree(models: Path = ROOT / "models") -> None:
    """The Dockerfile's precompile step, run on this checkout with Numba's in-tree cache (a fresh
    checkout has none; the server would otherwise compile every kernel at start)."""
    src = re.search(r"python - <<'PY'\n(.*?)\nPY\n", DOCKERFILE.read_text(), re.S)[1].replace("/tmp/models/", f"{models}/")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", *HOST_TARGET_ONLY)}
    subprocess.run([sys.executable, "-c", src], cwd=ROOT, env=env | {"NUMBA_SLP_VECTORIZE": "1"}, check=True,
                   capture_output=True, timeout=1800)
