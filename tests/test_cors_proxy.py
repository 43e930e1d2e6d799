"""/cors-proxy (--ui-mcp-proxy) through real servers, a single-model one and a router, against a
local target that records what reaches it. The contract is llama.cpp's
test_security.py::test_cors_proxy_only_forwards_explicit_proxy_headers and server-cors-proxy.h."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.server_proc import ServerProcess

KEY = "sk-proxy"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Target(BaseHTTPRequestHandler):
    def _answer(self):
        n = int(self.headers.get("content-length") or 0)
        self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                 self.rfile.read(n)))
        body = b'{"jsonrpc": "2.0"}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Mcp-Session-Id", "s-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def target():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module", params=["model", "router"])
def proxied(request, tmp_path_factory):
    env = {"LLAMA_CACHE": str(tmp_path_factory.mktemp("cache"))}
    if request.param == "model":
        s = ServerProcess("--ui-mcp-proxy", "--api-key", KEY, env=env)
    else:
        s = ServerProcess("--ui-mcp-proxy", "--api-key", KEY, model=None, env=env)
    yield s.wait_ready()
    s.stop()


def test_only_the_explicit_proxy_headers_go(proxied, target):
    with proxied.client() as c:
        r = c.get("/cors-proxy", params={"url": f"http://127.0.0.1:{target.server_port}/capture?x=1"}, headers={
            **AUTH, "Proxy-Authorization": "Basic secret", "X-Api-Key": KEY, "Cookie": "session=secret",
            "x-llama-server-proxy-header-accept": "application/json",
            "x-llama-server-proxy-header-authorization": "Bearer explicit"})
        assert r.status_code == 201 and r.json() == {"jsonrpc": "2.0"}
        assert r.headers["mcp-session-id"] == "s-1" and r.headers["content-type"] == "application/json"
        method, path, seen, _ = target.seen[-1]
        assert (method, path) == ("GET", "/capture?x=1")
        assert seen["accept"] == "application/json" and seen["authorization"] == "Bearer explicit"
        assert not {"proxy-authorization", "x-api-key", "cookie"} & set(seen)
        r = c.post("/cors-proxy", params={"url": f"http://127.0.0.1:{target.server_port}/mcp"}, headers=AUTH,
                   content=b'{"method": "tools/list"}')
        assert r.status_code == 201 and target.seen[-1][0] == "POST" and target.seen[-1][3] == b'{"method": "tools/list"}'


def test_the_key_is_still_needed_and_bad_targets_are_the_clients_mistake(proxied, target):
    with proxied.client() as c:
        assert c.get("/cors-proxy", params={"url": f"http://127.0.0.1:{target.server_port}/"}).status_code == 401
        for url, msg in [("ftp://host/x", "unsupported URL scheme"), ("http:///x", "missing host"),
                         ("http://u:p@127.0.0.1/", "authentication in target URL")]:
            r = c.get("/cors-proxy", params={"url": url}, headers=AUTH)
            assert r.status_code == 400 and msg in r.json()["error"]["message"], (url, r.text)
        r = c.get("/cors-proxy", params={"url": "http://127.0.0.1:1/"}, headers=AUTH)
        assert r.status_code == 502
        assert c.get("/props", headers=AUTH).json()["cors_proxy_enabled"] is True


def test_disabled_by_default(tmp_path):
    s = ServerProcess(model=None, env={"LLAMA_CACHE": str(tmp_path)}).wait_ready()
    try:
        with s.client() as c:
            for method in ("GET", "POST"):
                r = c.request(method, "/cors-proxy", params={"url": "http://127.0.0.1:1/"})
                assert r.status_code == 403
                assert r.json() == {"error": {"message": "this feature is disabled", "type": "feature_disabled"}}
            assert c.get("/props").json()["cors_proxy_enabled"] is False
    finally:
        s.stop()
