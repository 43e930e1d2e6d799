"""The tiny gemma3 projector of the vision tests (../shared/tools/make_tiny_mmproj.py, seed 0: the file
llama.cpp's fixtures were recorded with) and those fixtures."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAKE = ROOT.parent / "shared" / "tools" / "make_tiny_mmproj.py"
FIXTURE = ROOT / "tests" / "fixtures" / "vision_gemma3.json"
EMBD = ROOT / "tests" / "fixtures" / "vision_gemma3_embd.npz"


def tiny_mmproj(out: Path, width: int = 640) -> Path:
    subprocess.run([sys.executable, str(MAKE), str(out), str(width)], check=True, capture_output=True)
    return out


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def image(name: str) -> bytes:
    return base64.b64decode(fixture()["images"][name])


def llama_embd() -> dict[str, np.ndarray]:
    with np.load(EMBD) as z:
        return {k: z[k] for k in z.files}
