"""/cors-proxy?url=...: llama-server's proxy for the Web UI's MCP client (--ui-mcp-proxy).

A browser page cannot call an MCP server of another origin that sends no CORS headers, so the
server makes the call for it. GET and POST go to the `url` query parameter (http or https, a host,
no credentials in it); the request body goes as it is, and of the request's headers only those
named `x-llama-server-proxy-header-NAME` go, as `NAME`: the caller's own Authorization, API key
and cookies for this server never leave it. The answer comes back with its status, content type
and body. Without --ui-mcp-proxy the route answers 403 `feature_disabled`, as llama-server's does.
A URL that cannot be used is a 400, and a target that cannot be reached a 502.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from litestar import Request, Response, route

from service.api.errors import ApiError

PREFIX = "x-llama-server-proxy-header-"
TIMEOUT_S = 600  # llama-server's read and write timeouts for the proxied call
_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "date",
                   "server", "vary"})


def disabled() -> tuple[int, list[tuple[str, str]], bytes]:
    return 403, [("content-type", "application/json; charset=utf-8")], \
        b'{"error":{"message":"this feature is disabled","type":"feature_disabled"}}'


def _target(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ApiError(400, f"unsupported URL scheme in target URL: {parts.scheme}")
    if not parts.hostname:
        raise ApiError(400, "invalid target URL: missing host")
    if parts.password:
        raise ApiError(400, "authentication in target URL is not supported")
    return url if parts.path else url.replace(parts.netloc, parts.netloc + "/", 1)


async def relay(method: str, url: str, headers: list[tuple[str, str]], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of the proxied call."""
    target = _target(url)
    sent = {k[len(PREFIX):]: v for k, v in headers if k.lower().startswith(PREFIX) and len(k) > len(PREFIX)}
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as c:
            r = await c.request(method, target, headers=sent, content=body or None)
    except httpx.HTTPError as e:
        raise ApiError(502, f"proxy target unreachable: {type(e).__name__}: {e}", "server_error") from None
    out = [(k, v) for k, v in r.headers.multi_items()
           if k.lower() not in _DROP and not k.lower().startswith("access-control-")]
    return r.status_code, out, r.content


@route("/cors-proxy", http_method=["GET", "POST"])
async def cors_proxy(request: Request) -> Response:
    st = request.app.state.server
    if not st.args.ui_mcp_proxy:
        status, headers, body = disabled()
    else:
        status, headers, body = await relay(request.method, request.query_params.get("url", ""),
                                            list(request.headers.items()), await request.body())
    fields = dict(headers)
    media = fields.pop("content-type", None) or fields.pop("Content-Type", None) or "application/octet-stream"
    return Response(body, status_code=status, headers=fields, media_type=media)
