"""Vertex AI's prediction protocol (Google Cloud), on when AIP_MODE=PREDICTION, as llama-server:

    POST $AIP_PREDICT_ROUTE (default /predict)
    {"instances": [{"@requestFormat": "chatCompletions", ...the route's own body...}, ...]}
    -> {"predictions": [each route's JSON answer, or {"error": {...}}, in order]}

An instance names its route by the camelCase of its path ("/v1/chat/completions" ->
"chatCompletions", "/apply-template" -> "applyTemplate") or by the path itself; it runs through
the same app as a direct request (its own errors become that instance's entry), and never
streams. AIP_HEALTH_ROUTE adds an alias of /health. Instances run concurrently, 128 at most.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import msgspec
from litestar import Request, Response, get, post

from service.api.errors import bad_request
from service.api.info import health

MAX_INSTANCES = 128


def enabled() -> bool:
    return os.environ.get("AIP_MODE", "") == "PREDICTION"


def _route(name: str, default: str) -> str:
    v = os.environ.get(name, "") or default
    return v if not v or v.startswith("/") else "/" + v


def request_format(path: str) -> str:
    """The @requestFormat alias of a route path."""
    s = path[3:] if path.startswith("/v1") and len(path) > 3 else path
    parts = re.split(r"[/_-]", s.lstrip("/").split(":", 1)[0].split("{", 1)[0])
    parts = [p for p in parts if p]
    return "".join([parts[0], *(p[:1].upper() + p[1:] for p in parts[1:])]) if parts else ""


def _post_paths(app) -> dict[str, str]:
    """alias -> path over the app's POST routes (the first path wins a shared alias)."""
    out: dict[str, str] = {}
    for r in app.routes:
        if "POST" in getattr(r, "methods", ()) and "{" not in r.path:
            out.setdefault(request_format(r.path), r.path)
    return out


async def _call(app, scope: dict, path: str, body: bytes) -> Any:
    """One instance through the app, as a POST to `path`: its JSON answer."""
    sent, out = False, {"status": 500, "body": b""}

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the answer comes first; no disconnect to report

    async def send(msg):
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
            out["stream"] = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                                for k, v in msg.get("headers", []))
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")

    # a fresh scope: the outer one carries the framework's state for its own request (its body)
    inner = {k: scope[k] for k in ("type", "asgi", "http_version", "scheme", "server", "client", "root_path")
             if k in scope}
    inner.update(path=path, raw_path=path.encode(), method="POST", query_string=b"", state={},
                 headers=[(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())])
    await app(inner, receive, send)
    if not out["body"]:
        return None
    try:
        return msgspec.json.decode(out["body"])
    except msgspec.DecodeError:
        return out["body"].decode("utf-8", "replace")


def _error(message: str) -> dict:
    return {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}


async def _instance(request: Request, routes: dict[str, str], instance: Any) -> Any:
    if not isinstance(instance, dict):
        return _error("each instance must be a JSON object")
    fmt = instance.get("@requestFormat")
    if not isinstance(fmt, str):
        return _error("each instance must include a string @requestFormat")
    path = routes.get(fmt) or (fmt if fmt in routes.values() else None)
    if path is None:
        return _error(f"no handler registered for @requestFormat: {fmt}")
    payload = {k: v for k, v in instance.items() if k != "@requestFormat"}
    if "stream" in payload:
        payload["stream"] = False  # the predict route answers whole responses only
    return await _call(request.app, request.scope, path, msgspec.json.encode(payload))


@post(_route("AIP_PREDICT_ROUTE", "/predict"), status_code=200)
async def predict(request: Request) -> Response:
    try:
        data = msgspec.json.decode(await request.body())
    except msgspec.DecodeError as e:
        raise bad_request(f"invalid JSON in the request body: {e}") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    instances = data.get("instances")
    if not isinstance(instances, list):
        raise bad_request("request body must include an array field named instances")
    if len(instances) > MAX_INSTANCES:
        raise bad_request(f"instances array exceeds maximum size of {MAX_INSTANCES}")
    routes = _post_paths(request.app)
    return Response({"predictions": list(await asyncio.gather(*(_instance(request, routes, i) for i in instances)))})


def routes() -> list:
    """The routes to add when AIP_MODE=PREDICTION (none otherwise)."""
    if not enabled():
        return []
    out = [predict]
    alias = _route("AIP_HEALTH_ROUTE", "")
    if alias and alias not in ("/health", "/v1/health"):
        out.append(get(alias, name="gcp_health")(health.fn))
    return out
