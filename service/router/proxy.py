"""Forward one HTTP request to a model's server and stream its answer back as it comes.

The answer's status, headers and body pass through unchanged (SSE streams chunk by chunk), less
the hop-by-hop headers and those the router sets itself (CORS, Date, Server). A client that goes
away closes the connection to the model's server, which cancels the generation there as it
would for a direct client.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx

_DROP_REQUEST = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade",
                           "te", "trailer", "proxy-connection", "accept-encoding", "expect"})
_DROP_ANSWER = frozenset({"connection", "keep-alive", "transfer-encoding", "date", "server", "vary"})

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    global _client
    if _client is None:  # no timeout: a generation may take as long as it takes (the child has -to)
        _client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None,
                                                                     max_keepalive_connections=64))
    return _client


class Unreachable(Exception):
    pass


async def wait_disconnect(receive) -> None:
    """Returns when the client has gone (the body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def forward(scope, receive, send, base_url: str, body: bytes) -> None:
    """Send the request to base_url + its path and query; Unreachable if nothing could be sent."""
    headers = [(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in _DROP_REQUEST]
    url = base_url + scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
    req = client().build_request(scope["method"], url, headers=headers, content=body)
    try:
        resp = await client().send(req, stream=True)
    except httpx.HTTPError as e:
        raise Unreachable(str(e)) from None

    async def relay() -> None:
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.multi_items()
               if k.lower() not in _DROP_ANSWER and not k.lower().startswith("access-control-")]
        await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
        try:
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError:
            pass  # the model's server went away mid-answer: end what was sent
        await send({"type": "http.response.body", "body": b""})

    relaying = asyncio.ensure_future(relay())
    gone = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await asyncio.wait({relaying, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (relaying, gone):
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await relaying
        await resp.aclose()  # closing the connection tells the child its client left
