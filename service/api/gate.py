"""ASGI middleware in front of every route: status (503 while loading or draining), the API
key, CORS, and one structured log line per request.

The API key is read from `Authorization: Bearer KEY` (or a bare `Authorization: KEY`) or,
without an Authorization header, `X-Api-Key: KEY`, and compared in constant time against each
configured key. /health and /models stay public, as in llama-server; CORS preflights (OPTIONS)
are answered before any check, and a server still loading answers 503 before asking for a key.
"""

from __future__ import annotations

import hmac
import itertools
import time

import msgspec
import structlog

from service.api.errors import ApiError
from service.api.state import Status

log = structlog.get_logger("llamajit.http")
PUBLIC = frozenset({"/health", "/v1/health", "/models", "/v1/models"})
_enc = msgspec.json.Encoder()
_request_ids = itertools.count()


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def key_ok(keys: tuple[str, ...], headers: dict[str, str]) -> bool:
    # llama-server: Authorization if present, else X-Api-Key; a "Bearer " prefix is dropped
    given = headers.get("authorization") or headers.get("x-api-key", "")
    if given[:7].lower() == "bearer ":
        given = given[7:]
    given = given.strip()
    ok = False
    for k in keys:  # every key is compared, so timing does not tell which one matched
        ok |= hmac.compare_digest(given.encode(), k.encode())
    return ok


class Gate:
    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        headers = _headers(scope)
        origin = headers.get("origin")
        # llama-server echoes the Origin on every answer (errors included, so a page can read
        # them) and answers every preflight itself, before the status and key checks.
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")] if origin else []
        if method == "OPTIONS":
            return await self._send(send, 200, b"", cors + [
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", b"*"),
                (b"content-type", b"text/html")])
        st = self.state
        t0 = time.perf_counter()
        status_box = [0]
        fields = scope.setdefault("state", {}).setdefault("log", {})  # handlers add slot, tokens, timings
        fields["id"] = next(_request_ids)
        head = method == "HEAD"  # answered as GET without the body, as llama-server's HTTP library does
        if head:
            scope = {**scope, "method": "GET"}

        async def send_logged(msg):
            if msg["type"] == "http.response.start":
                status_box[0] = msg["status"]
                msg = {**msg, "headers": list(msg.get("headers", [])) + cors}
            elif head and msg["type"] == "http.response.body":
                msg = {**msg, "body": b""}
            await send(msg)

        err = None
        if path not in PUBLIC:  # the status first, then the key: llama-server's order
            if st.status is Status.LOADING:
                err = ApiError(503, "Loading model", "unavailable_error")
            elif st.status is Status.DRAINING:
                err = ApiError(503, "Server is shutting down", "unavailable_error")
            elif st.status is Status.FAILED:
                err = ApiError(503, "Model failed to load", "unavailable_error")
            elif st.args.api_keys and not key_ok(st.args.api_keys, headers):
                err = ApiError(401, "Invalid API Key", "authentication_error")
        st.in_flight += 1
        try:
            if err is not None:
                status_box[0] = err.code
                await self._send(send, err.code, _enc.encode(err.body()), cors + [(b"content-type", b"application/json")])
            else:
                await self.app(scope, receive, send_logged)
        finally:
            st.in_flight -= 1
            log.info("request", method=method, route=path, status=status_box[0],
                     ms=round((time.perf_counter() - t0) * 1e3, 2), **fields)

    @staticmethod
    async def _send(send, status: int, body: bytes, headers: list) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
