"""The tiny gemma3 projector of the vision tests (../shared/tools/make_tiny_mmproj.py, seed 0: the file
llama.cpp's fixtures were recorded with) and those fixtures."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAKE = ROOT.parent / "shared" / "tools" / "make_tiny_mmproj.py"
FIXTURE = ROOT / "tests" / "fixtures" / "vision_gemma3.json"
EMBD = ROOT / "tests" / "fixtures" / "vision_gemma3_embd.npz"


SHA256_640 = "77085142955c13ff401bddd81031d96e6de352f1c9c892a86e84f9948c803de7"  # the file the fixtures saw


def tiny_mmproj(out: Path, width: int = 640) -> Path:
    subprocess.run([sys.executable, str(MAKE), str(out), str(width)], check=True, capture_output=True)
    if width == 640:  # a changed generator would make llama.cpp's fixtures stale: rerun record_vision.py
        assert hashlib.sha256(out.read_bytes()).hexdigest() == SHA256_640, f"{MAKE} changed"
    return out


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def image(name: str) -> bytes:
    return base64.b64decode(fixture()["images"][name])


def llama_embd() -> dict[str, np.ndarray]:
    with np.load(EMBD) as z:
        return {k: z[k] for k in z.files}
