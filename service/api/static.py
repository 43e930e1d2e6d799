"""The Web UI's files (service/webui/) and the lookup of a file under a folder, shared by the
single-model app (service.api.webui) and the router (service.router.app), without Litestar."""

from __future__ import annotations

from pathlib import Path

BUILTIN = Path(__file__).resolve().parent.parent / "webui"
ASSETS = frozenset(p.relative_to(BUILTIN).as_posix() for p in BUILTIN.rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts)
PUBLIC_PATHS = frozenset({"/"} | {"/" + a for a in ASSETS})

# Types by suffix, the ones browsers care about (module scripts need a JavaScript type); the
# rest go out as bytes. A fixed table rather than `mimetypes`, which reads the host's
# /etc/mime.types and so answers differently from machine to machine.
TYPES = {
    ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".txt": "text/plain", ".json": "application/json", ".map": "application/json",
    ".webmanifest": "application/manifest+json", ".wasm": "application/wasm", ".woff2": "font/woff2",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
}  # (Litestar adds "; charset=utf-8" to the text types)


def find(root: Path, rel: str) -> Path | None:
    """root/rel if it is a file inside root (a directory means its index.html); None otherwise,
    also for anything that escapes root (.., symlinks out)."""
    base = root.resolve()
    try:
        target = (base / rel.lstrip("/")).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(base):
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None
