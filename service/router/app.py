"""The router's HTTP routes (llama-server started without a model), behind the same Gate as a
single-model server (CORS, --api-prefix, API keys, the -to body timeout, request logs).

Its own routes: /health, GET /props (the router's, or a model's with ?model=), GET /models and
/v1/models (every known model and its status; ?reload=1 reads the sources again), POST
/models/load, POST /models/unload, GET /models/sse (status events). Every other llama-server
route is forwarded to the model that the request names: the `model` field of a POST body, the
`model` query parameter of a GET. A missing name, an unknown one, or (autoload off, by
--no-models-autoload or ?autoload=false) a model not loaded is a 400 in llama-server's words. An
unloaded model is loaded first (service.router.pool queues it and makes room).

Plain ASGI rather than Litestar routes: a proxy moves bytes it does not type, and it must see
the client leave while a request waits for its model (the waiting request then gives up its
place in the queue).
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qs

import httpx
import msgspec
import structlog

from service.api.apierror import ApiError
from service.router import proxy
from service.router.pool import LoadFailed, Pool

log = structlog.get_logger("llamajit.router")
# llama-server's debug hook for its router tests (test_router.py sets it): every proxied request
# holds its model 2 s before it is forwarded, and every load waits 2 s before it starts, so that
# "a busy model" and "a queued request" last long enough to be seen.
FAKE_TIMING = bool(os.environ.get("LLAMA_SERVER_DEBUG_FAKE_TIMING"))
MAX_BODY = 100 * 1024 * 1024  # llama-server's HTTP library's limit, as in the single-model server
_enc = msgspec.json.Encoder()

FORWARD_POST = frozenset({
    "/props", "/completion", "/completions", "/v1/completions", "/chat/completions", "/v1/chat/completions",
    "/v1/chat/completions/control", "/responses", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens",
    "/infill", "/embedding", "/embeddings", "/v1/embeddings", "/rerank", "/reranking", "/v1/rerank",
    "/v1/reranking", "/tokenize", "/detokenize", "/apply-template", "/chat/completions/input_tokens",
    "/v1/chat/completions/input_tokens", "/responses/input_tokens", "/v1/responses/input_tokens",
    "/lora-adapters", "/audio/transcriptions", "/v1/audio/transcriptions"})
FORWARD_GET = frozenset({"/metrics", "/slots", "/lora-adapters", "/props"})


def _autoload(query: dict[str, list[str]], default: bool) -> bool:
    v = query.get("autoload", [""])[0]
    return default if not v else v in ("true", "1")


async def _sleeping(inst) -> bool:
    """A loaded model whose server sleeps (--sleep-idle-seconds) is listed as `sleeping`: its /props
    says so without waking it."""
    from service.router.instance import State

    if inst.state is not State.LOADED or inst.stopping:
        return False
    try:
        r = await proxy.client().get(inst.url + "/props", timeout=2)
        return bool(r.json().get("is_sleeping"))
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


class RouterApp:
    def __init__(self, pool: Pool, args, build_info: str):
        self.pool, self.args, self.build_info = pool, args, build_info

    async def __call__(self, scope, receive, send):
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            if path in ("/health", "/v1/health") and method == "GET":
                return await self._json(send, 200, {"status": "ok"})
            if path in ("/models", "/v1/models") and method == "GET":
                return await self._json(send, 200, await self.listing(bool(query.get("reload"))))
            if path == "/models/sse" and method == "GET":
                return await self._events(send, receive)
            if path == "/props" and method == "GET" and not query.get("model"):
                return await self._json(send, 200, self.props())
            if method == "POST" and path in ("/models/load", "/models/unload", "/models"):
                return await self._manage(path, await self._body(receive), send)
            if path == "/cors-proxy" and method in ("GET", "POST"):
                return await self._cors_proxy(method, query, scope, await self._body(receive), send)
            if method == "DELETE" and path == "/models":
                return await self._delete(query.get("model", [""])[0], send)
            if method == "POST" and (path in FORWARD_POST or path.startswith("/slots/")):
                body = await self._body(receive)
                name = self._body_model(body)
                return await self._forward(scope, receive, send, name, _autoload(query, self.args.models_autoload),
                                           body, touch=True)
            if method == "GET" and path in FORWARD_GET:
                name = query.get("model", [""])[0]
                return await self._forward(scope, receive, send, name, _autoload(query, self.args.models_autoload),
                                           b"", touch=False)
            if method == "GET":  # the Web UI's files, as a single-model server serves them
                return await self._static(path, send)
            raise ApiError(404, "File Not Found")
        except ApiError as e:
            await self._json(send, e.code, e.body())

    # -- answers
    @staticmethod
    async def _json(send, status: int, obj) -> None:
        body = _enc.encode(obj)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _body(receive) -> bytes:
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise asyncio.CancelledError
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY:
                raise ApiError(413, "request body is too large")
            if not msg.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    def _body_model(body: bytes) -> str:
        try:
            obj = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError as e:
            raise ApiError(400, f"invalid JSON in the request body: {e}") from None
        name = obj.get("model") if isinstance(obj, dict) else None
        return name if isinstance(name, str) else ""

    async def _static(self, path: str, send) -> None:
        from pathlib import Path

        from service.api import static

        found = None
        if self.args.webui:
            found = static.find(Path(self.args.static_path) if self.args.static_path else static.BUILTIN, path)
        if found is None and path.lstrip("/") == "sw.js":
            found = static.BUILTIN / "sw.js"
        if found is None:
            raise ApiError(404, "File Not Found")
        body = await asyncio.to_thread(found.read_bytes)
        kind = static.TYPES.get(found.suffix.lower(), "application/octet-stream")
        kind += "; charset=utf-8" if kind.startswith("text/") else ""
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": body})

    async def _cors_proxy(self, method, query, scope, body: bytes, send) -> None:
        from service.api import cors_proxy

        if not self.args.ui_mcp_proxy:
            status, headers, out = cors_proxy.disabled()
        else:
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            status, headers, out = await cors_proxy.relay(method, query.get("url", [""])[0], headers, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
                    + [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    def props(self) -> dict:
        return {"role": "router", "max_instances": self.args.models_max, "models_autoload": self.args.models_autoload,
                "model_alias": "llama-server", "model_path": "none",
                "default_generation_settings": {"params": {}, "n_ctx": 0},
                "ui_settings": {}, "build_info": self.build_info, "cors_proxy_enabled": self.args.ui_mcp_proxy}

    async def listing(self, reload: bool) -> dict:
        if reload:
            self.reload()
        now = int(time.time())
        data = []
        shown = [i for i in self.pool.instances.values() if not i.entry.hidden]
        asleep = await asyncio.gather(*(_sleeping(i) for i in shown))
        for inst, sleeping in zip(shown, asleep):
            item = {"id": inst.name, "aliases": [], "tags": [], "object": "model", "owned_by": "llamacpp",
                    "created": now, "status": inst.status(sleeping),
                    "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                    "source": inst.entry.source, "can_remove": inst.entry.source == "cache"}
            for k, v in inst.info.items():  # what the model's own /v1/models says, once it is running
                item.setdefault(k, v)
            data.append(item)
        return {"data": data, "object": "list"}

    def reload(self) -> None:
        from service.router import catalog
        from service.router.instance import Instance
        from service.router.preset import PresetError

        try:
            entries = catalog.build(self.args.models_dir, self.args.models_preset)
        except PresetError as e:
            raise ApiError(400, str(e)) from None
        pool = self.pool
        for name in list(pool.instances):
            inst = pool.instances[name]
            if name not in entries:
                inst.stop()  # gone from its source: unloaded if running, and no longer listed
                del pool.instances[name]
            elif not inst.running:
                inst.entry = entries[name]
        for name, entry in entries.items():
            if name not in pool.instances:
                pool.instances[name] = Instance(entry)
            else:
                pool.instances[name].entry.hidden = entry.hidden
        pool.publish({"model": "*", "event": "models_reload"})

    async def _manage(self, path: str, body: bytes, send) -> None:
        if path == "/models":
            raise ApiError(501, "downloading models through the router is not available in llamajit yet: put the "
                                "file in --models-dir, or in the cache with `llama-server -hf REPO`",
                           "not_supported_error")
        inst = self.pool.get(self._body_model(body))
        if path == "/models/load":
            if inst is None:
                raise ApiError(404, "model is not found", "not_found_error")
            if inst.running:
                raise ApiError(400, "model is already running")
            self.pool.load(inst)
        else:
            if inst is None:
                raise ApiError(400, "model is not found")
            if not inst.running:
                raise ApiError(400, "model is not running")
            inst.stop()
        await self._json(send, 200, {"success": True})

    async def _delete(self, name: str, send) -> None:
        """DELETE /models?model=NAME: a cache model's files go (stopped first if running), as in llama-server."""
        from service.router import catalog
        from service.router.instance import State

        if not name:
            raise ApiError(400, "model must be a non-empty string")
        inst = self.pool.get(name)
        if inst is None:
            raise ApiError(404, f"model name={name} is not found", "not_found_error")
        if inst.entry.source != "cache":
            raise ApiError(400, f"model name={name} is not removable (not from cache)")
        inst.stop()
        while inst.state is not State.UNLOADED:  # its server exits before its file goes
            await self.pool.wait_change()
        ok = await asyncio.to_thread(catalog.remove_cached, inst.entry)
        if not ok:
            log.warning("no cached files left to remove", model=name)
        self.pool.instances.pop(name, None)
        self.pool.publish({"model": name, "event": "model_remove"})
        log.info("removed model from the cache", model=name)
        await self._json(send, 200, {"success": True})

    async def _events(self, send, receive) -> None:
        q: asyncio.Queue = asyncio.Queue()
        self.pool.listeners.add(q)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        gone = asyncio.ensure_future(proxy.wait_disconnect(receive))
        closing = asyncio.ensure_future(self.pool.closing.wait())  # the router stops: streams end
        try:
            while True:
                nxt = asyncio.ensure_future(q.get())
                await asyncio.wait({nxt, gone, closing}, return_when=asyncio.FIRST_COMPLETED)
                if gone.done() or closing.done():
                    nxt.cancel()
                    if closing.done():
                        await send({"type": "http.response.body", "body": b""})
                    return
                await send({"type": "http.response.body", "body": b"data: " + _enc.encode(nxt.result()) + b"\n\n",
                            "more_body": True})
        finally:
            gone.cancel()
            closing.cancel()
            self.pool.listeners.discard(q)

    async def _forward(self, scope, receive, send, name: str, autoload: bool, body: bytes, touch: bool) -> None:
        if not name:
            raise ApiError(400, "model name is missing from the request")
        inst = self.pool.get(name)
        if inst is None:
            raise ApiError(400, f"model '{name}' not found")
        if not autoload and not inst.running:
            raise ApiError(400, "model is not loaded")
        async with self.pool.use(inst):
            waiting = asyncio.ensure_future(self.pool.ready(inst))
            gone = asyncio.ensure_future(proxy.wait_disconnect(receive))
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not waiting.done():  # the client left while its model loaded: it gives up its place
                waiting.cancel()
                return
            try:
                waiting.result()
            except LoadFailed as e:
                raise ApiError(500, str(e), "server_error") from None
            if touch:
                self.pool.touch(inst)
            if FAKE_TIMING:
                await asyncio.sleep(2)
            try:
                await proxy.forward(scope, receive, send, inst.url, body)
            except proxy.Unreachable as e:
                raise ApiError(503, f"model name={name} is not reachable: {e}", "unavailable_error") from None
