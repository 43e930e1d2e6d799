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


class ProjectorFiles:
    """A tiny projector's generator (seed 0), the sha256 its 640-wide file had when llama.cpp's
    fixtures were recorded, and those fixtures (the recorded JSON and the projector rows)."""

    def __init__(self, make: Path, fixture: Path, embd: Path, sha256_640: str, recorder: str):
        self.make, self.fixture_path, self.embd, self.sha256_640, self.recorder = make, fixture, embd, sha256_640, recorder

    def tiny(self, out: Path, width: int = 640) -> Path:
        subprocess.run([sys.executable, str(self.make), str(out), str(width)], check=True, capture_output=True)
        if width == 640:  # a changed generator would make llama.cpp's fixtures stale: rerun the recorder
            assert hashlib.sha256(out.read_bytes()).hexdigest() == self.sha256_640, \
                f"{self.make} changed: rerun {self.recorder}"
        return out

    def fixture(self) -> dict:
        return json.loads(self.fixture_path.read_text())

    def image(self, name: str) -> bytes:
        return base64.b64decode(self.fixture()["images"][name])

    def llama_embd(self) -> dict[str, np.ndarray]:
        with np.load(self.embd) as z:
            return {k: z[k] for k in z.files}


GEMMA3_FILES = ProjectorFiles(MAKE, FIXTURE, EMBD, SHA256_640, "tests/fixtures/record_vision.py")
tiny_mmproj, fixture, image, llama_embd = (GEMMA3_FILES.tiny, GEMMA3_FILES.fixture, GEMMA3_FILES.image,
                                           GEMMA3_FILES.llama_embd)
