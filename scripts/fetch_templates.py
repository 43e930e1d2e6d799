"""Fetch the chat templates that llama.cpp ships (models/templates/ of the llama.cpp that the
llama-cpp-python 0.3.36 sdist vendors, 0c1e570) into .tools/llama.cpp-templates/, for the tests
that render them and compare with llama-server's recorded output (tests/chat_sweep.py).

The sdist comes from PyPI with `pip download` (as scripts/fetch_models.py fetches wheels), is
checked against a pinned sha256, and only the template files are kept (about 600 KB of the
77 MB archive). Idempotent: with every file present and the stamp naming the pinned sdist,
nothing is downloaded. The templates are model authors' files, data for the tests, not code.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / ".tools" / "llama.cpp-templates"
SDIST = "llama-cpp-python==0.3.36"
ARCHIVE = "llama_cpp_python-0.3.36.tar.gz"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
MEMBER_DIR = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/"
STAMP = ".source"  # names the sdist the files came from
MIN_FILES = 60  # the sdist holds 70 templates: fewer means a broken extraction


def present(dest: Path = DEST) -> bool:
    stamp = dest / STAMP
    return stamp.exists() and stamp.read_text().strip() == SHA256 and len(list(dest.glob("*.jinja"))) >= MIN_FILES


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(dest: Path = DEST) -> int:
    """Download, check and extract; the number of templates written."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "-d", tmp, SDIST], check=True)
        archive = Path(tmp) / ARCHIVE
        got = _sha256(archive)
        if got != SHA256:
            raise SystemExit(f"fetch_templates: {ARCHIVE}: sha256 {got}, want {SHA256}")
        part = dest.with_name(dest.name + ".part")  # a half-extracted folder never looks fetched
        part.mkdir(parents=True, exist_ok=True)
        ignore = dest.parent / ".gitignore"  # .tools/ holds fetched files only (as fetch_tools.py writes it)
        if not ignore.exists():
            ignore.write_text("# created by scripts/fetch_tools.py\n*\n")
        n = 0
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                name = m.name[len(MEMBER_DIR):]
                if not m.isfile() or not m.name.startswith(MEMBER_DIR) or "/" in name:
                    continue
                src = tar.extractfile(m)
                assert src is not None
                (part / name).write_bytes(src.read())
                n += 1
        if n < MIN_FILES:
            raise SystemExit(f"fetch_templates: only {n} files under {MEMBER_DIR} in {ARCHIVE}")
        (part / STAMP).write_text(SHA256 + "\n")
        if dest.exists():
            for old in dest.iterdir():
                old.unlink()
            dest.rmdir()
        part.rename(dest)
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/fetch_templates.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=DEST)
    a = ap.parse_args(argv)
    if present(a.dest):
        print(f"llama.cpp templates: present in {a.dest}")
        return
    n = fetch(a.dest)
    print(f"llama.cpp templates: {n} files from {SDIST} (sha256 ok) into {a.dest}")


if __name__ == "__main__":
    main()
