"""The tiny `mlp` projector of the mlp vision tests (tests/fixtures/make_tiny_mlp_mmproj.py, seed 0: the file
llama.cpp's fixtures were recorded with, tests/fixtures/record_vision_mlp.py) and those fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.vision_files import ProjectorFiles

ROOT = Path(__file__).resolve().parent.parent
MAKE = ROOT / "tests" / "fixtures" / "make_tiny_mlp_mmproj.py"
FIXTURE = ROOT / "tests" / "fixtures" / "vision_mlp.json"
EMBD = ROOT / "tests" / "fixtures" / "vision_mlp_embd.npz"

SHA256_640 = "c17ee8043bc271e9267ccc4834677883d188917d78c3ab45102257761691c7c3"  # the file the fixtures saw

MLP_FILES = ProjectorFiles(MAKE, FIXTURE, EMBD, SHA256_640, "tests/fixtures/record_vision_mlp.py")
tiny_mlp_mmproj, fixture, image, llama_embd = MLP_FILES.tiny, MLP_FILES.fixture, MLP_FILES.image, MLP_FILES.llama_embd


def rewrite(src: Path, out: Path, **uint32_keys: int) -> Path:
    """A copy of the projector src with some uint32 metadata changed (clip.vision.block_count=...: keys
    with dots spelled with '__'), for the breakage tests."""
    import gguf

    from service.gguf_reader import read_gguf

    f = read_gguf(src)
    new = {k.replace("__", "."): v for k, v in uint32_keys.items()}
    w = gguf.GGUFWriter(str(out), "clip")
    for k, v in f.metadata.items():
        if not k.startswith("clip."):
            continue
        v = new.get(k, v)
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        elif isinstance(v, (int, np.integer)):
            w.add_uint32(k, int(v))
        else:
            w.add_array(k, [float(x) for x in v])
    for name in f.tensors:
        raw = np.asarray(f.data(name))
        w.add_tensor(name, raw.astype(np.float16 if raw.dtype == np.float16 else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
