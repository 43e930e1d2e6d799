"""ASGI middleware in front of every route: CORS, --api-prefix, status (503 while loading or
draining), the API key, the -to timeout on request bodies, and one structured log line per request.

CORS, as llama-server decides it (--cors-origins, --cors-methods, --cors-headers,
--cors-credentials):
- Every answer, errors included, carries Access-Control-Allow-Origin. With credentials allowed
  (the default) and origins "*" (the default) it is the request's Origin; with "localhost", the
  Origin only when it is an http(s) URL whose host is localhost, 127.0.0.1 or [::1] (any port);
  any other single value is sent as given (so --no-cors-credentials with "*" sends "*"). A
  comma-separated list, which llama-server sends verbatim and no browser accepts, reflects the
  Origin when it is one of the list. Nothing is reflected without an Origin header, and
  `Vary: Origin` comes with every answer that depends on it.
- With --tools or --agent, origins left at "*" become "localhost" (llama-server narrows its
  default when tools run; an explicit `--cors-origins '*'` cannot be told apart from it here).
- A preflight (OPTIONS, any path) is answered 200 at once, before the status and key checks
  (browsers send no key with one): Allow-Credentials "true"/"false", Allow-Methods and
  Allow-Headers as configured, an empty text/html body.

--api-prefix P: every route is served at P + its path (/health too); any other path is 404
"File Not Found", after the status and key checks, as in llama-server. The public routes stay
public under the prefix (llama-server checks the prefixed path against its public list, so
there /P/health asks for the key: a health probe has no key to give).

The API key is read from `Authorization: Bearer KEY` (or a bare `Authorization: KEY`) or,
without an Authorization header, `X-Api-Key: KEY`, and compared in constant time against each
configured key. /health, /models and the built-in Web UI's files (service.api.webui) stay
public; a server still loading answers 503 before asking for a key (the UI's files load, as in
llama-server, so the page can say it is loading).

-to N: a request body that the app is reading and that brings no data for N seconds (a client
that stalls or trickles slower than that) is answered 400 with `Connection: close`, and the
connection is closed; slower but steady trickles are fine, as with cpp-httplib's per-read
timeout. The rest of -to works on the connection (service.transport.protocol_class).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import time

import msgspec
import structlog

from service.api.apierror import ApiError
from service.api.state import Status
from service.api.static import PUBLIC_PATHS

log = structlog.get_logger("llamajit.http")
PUBLIC = frozenset({"/health", "/v1/health", "/models", "/v1/models"}) | PUBLIC_PATHS
_enc = msgspec.json.Encoder()
_request_ids = itertools.count()
_ACAO = b"Access-Control-Allow-Origin"  # header names in llama-server's case: some clients compare exactly


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _latin1(s: str) -> bytes:
    return s.encode("latin-1", "replace")


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


def origin_is_local(origin: str) -> bool:
    """llama-server's localhost test: an http or https URL whose host is localhost, 127.0.0.1 or
    ::1 (bracketed), with any numeric port; anything unparsable is not local."""
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https"):
        return False
    host = rest.partition("@")[2] if "@" in rest else rest
    host = host.partition("/")[0]
    if host.startswith("["):
        inner, closed, after = host[1:].partition("]")
        if not closed:
            return False
        host, port = inner, after[1:] if after.startswith(":") else ""
    else:
        host, _, port = host.partition(":")
    return (not port or port.isdigit()) and host in ("localhost", "127.0.0.1", "::1")


class Cors:
    """The CORS headers of an answer (see the module docstring)."""

    def __init__(self, args):
        origins = args.cors_origins
        if origins == "*" and (args.tools or args.agent):
            origins = "localhost"
        self.origins, self.credentials = origins, args.cors_credentials
        self.listed = frozenset(o.strip() for o in origins.split(",")) if "," in origins else None
        self.preflight = [(b"Access-Control-Allow-Credentials", b"true" if args.cors_credentials else b"false"),
                          (b"Access-Control-Allow-Methods", _latin1(args.cors_methods)),
                          (b"Access-Control-Allow-Headers", _latin1(args.cors_headers)),
                          (b"Content-Type", b"text/html")]

    def headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if self.credentials and self.origins == "*":
            ok = bool(origin)
        elif self.origins == "localhost":
            ok = bool(origin) and origin_is_local(origin)
        elif self.listed is not None:
            ok = origin in self.listed
        else:
            return [(_ACAO, _latin1(self.origins))] if self.origins else []
        if origin and not ok:
            log.warning("CORS: origin not allowed", origin=origin)
        return ([(_ACAO, _latin1(origin))] if ok else []) + [(b"Vary", b"Origin")]


class Gate:
    def __init__(self, app, state):
        self.app, self.state = app, state
        self.cors = Cors(state.args)
        self.prefix = state.args.api_prefix
        self.read_timeout = state.args.timeout  # 0: no timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        headers = _headers(scope)
        cors = self.cors.headers(headers.get("origin"))
        if method == "OPTIONS":
            return await self._send(send, 200, b"", cors + self.cors.preflight)
        routed = not self.prefix or path.startswith(self.prefix + "/")
        if self.prefix and routed:
            path = path[len(self.prefix):]
            raw = scope.get("raw_path") or b""
            p = self.prefix.encode()
            scope = {**scope, "path": path, "raw_path": raw[len(p):] if raw.startswith(p) else path.encode()}
        st = self.state
        t0 = time.perf_counter()
        status_box = [0]
        fields = scope.setdefault("state", {}).setdefault("log", {})  # handlers add slot, tokens, timings
        fields["id"] = next(_request_ids)
        head = method == "HEAD"  # answered as GET without the body, as llama-server's HTTP library does
        if head:
            scope = {**scope, "method": "GET"}
        body_open, timed_out = [self.read_timeout > 0], [False]

        async def receive_timed():
            if not body_open[0]:  # the body is in (or never timed): e.g. the wait for a disconnect
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                timed_out[0] = True
                raise ApiError(400, f"request body timed out: no data for {self.read_timeout} s") from None
            body_open[0] = msg["type"] == "http.request" and msg.get("more_body", False)
            return msg

        async def send_logged(msg):
            if msg["type"] == "http.response.start":
                status_box[0] = msg["status"]
                closing = [(b"Connection", b"close")] if timed_out[0] else []  # the request is cut
                msg = {**msg, "headers": list(msg.get("headers", [])) + cors + closing}
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
        if err is None and not routed:
            err = ApiError(404, "File Not Found")
        st.in_flight += 1
        try:
            if err is not None:
                status_box[0] = err.code
                await self._send(send, err.code, _enc.encode(err.body()), cors + [(b"content-type", b"application/json")])
            else:
                await self.app(scope, receive_timed, send_logged)
        finally:
            st.in_flight -= 1
            log.info("request", method=method, route=path, status=status_box[0],
                     ms=round((time.perf_counter() - t0) * 1e3, 2), **fields)

    @staticmethod
    async def _send(send, status: int, body: bytes, headers: list) -> None:
        headers = headers + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
