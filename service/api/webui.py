"""The Web UI: static files served at / by the app itself, as llama-server serves its own.

- The built-in UI lives in service/webui/ (plain HTML, JS and CSS with vendored libraries: no
  build step, nothing fetched at run time, so it works on a server without internet).
- --path DIR serves DIR's files instead (DIR/index.html at /), as llama-server mounts it.
- --no-ui (--no-webui): no files at all; / is 404 "File Not Found" like any unknown path.
  /sw.js is still answered with a worker that unregisters itself (also under --path when DIR has
  none): a browser that once ran a UI with a service worker on this origin (llama-server's does)
  would otherwise keep showing that old UI from its cache. The built-in UI registers no worker;
  its sw.js is that same remover. manifest.webmanifest and _app/version.json are there because
  llama-server's UI has them under those names, and clients (llama.cpp's own tests among them)
  ask for them without a key.

A router (service.router.app) serves the same files; there the page lists GET /models in a
picker and names the chosen model in each request.

The built-in UI's paths are public under --api-key (Gate reads PUBLIC_PATHS): the page must load
before it can ask for the key, as in llama-server, where the embedded assets are public and
load while the model is still loading. Files under --path are not public (llama-server's list
is its embedded assets only).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from litestar import Request, Response, get

from service.api.errors import ApiError

from service.api.static import ASSETS, BUILTIN, PUBLIC_PATHS, TYPES, find  # noqa: F401 (re-exported)


@get(["/", "/{rel:path}"], include_in_schema=False)
async def static_file(request: Request, rel: str = "/") -> Response:
    args = request.app.state.server.args
    found = None
    if args.webui:
        found = find(Path(args.static_path) if args.static_path else BUILTIN, rel)
    if found is None and rel.lstrip("/") == "sw.js":  # the self-removing worker (module docstring)
        found = BUILTIN / "sw.js"
    if found is None:
        raise ApiError(404, "File Not Found")
    body = await asyncio.to_thread(found.read_bytes)
    # no-cache: the browser revalidates on each load, so a new version is used at once (the
    # built-in files keep their names across versions; llama-server does the same for index.html)
    return Response(body, media_type=TYPES.get(found.suffix.lower(), "application/octet-stream"),
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
