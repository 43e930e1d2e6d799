"""API keys and CORS against a real server, as llama-server answers them.

One server for the whole module: two keys (`--api-key k1,k2`), `--metrics` and `--props`, so
every route in `service.api.app.ROUTES` has something to answer once the key is right.
Protocol taken from llama.cpp's tools/server/tests/unit/test_security.py and its HTTP
middleware: 401 authentication_error "Invalid API Key" without or with a wrong key (from
`Authorization: Bearer` or `X-Api-Key`), /health and /models public, OPTIONS answered before
the key check with Allow-Methods "GET, POST, DELETE, OPTIONS" (llama-server's default
--cors-methods) and Allow-Headers "*", and the request's Origin
echoed in Access-Control-Allow-Origin on every answer.
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from service.api import webui
from service.api.app import ROUTES
from tests.server_proc import LoggedServer

KEYS = ("sk-llamajit-first-4f1c9a", "sk-llamajit-second-7be20d")
WRONG = "sk-not-the-key-0000"
PUBLIC = {"/health", "/v1/health", "/models", "/v1/models"}
CHAT = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi"}]

# A request each route accepts (n_predict small: generation is not what is tested here).
BODIES = {
    "/completion": {"prompt": "Hello", "n_predict": 2},
    "/completions": {"prompt": "Hello", "n_predict": 2},
    "/v1/completions": {"prompt": "Hello", "max_tokens": 2},
    "/chat/completions": {"messages": CHAT, "max_tokens": 2},
    "/v1/chat/completions": {"messages": CHAT, "max_tokens": 2},
    "/tokenize": {"content": "Hello"},
    "/detokenize": {"tokens": [19556]},
    "/apply-template": {"messages": CHAT},
    "/props": {},
    "/infill": {"input_prefix": "def f(", "input_suffix": "):\n", "n_predict": 2},
    "/embedding": {"content": "Hello"},
    "/embeddings": {"input": "Hello"},
    "/v1/embeddings": {"input": "Hello"},
    "/rerank": {"query": "q", "documents": ["a"]},
    "/reranking": {"query": "q", "documents": ["a"]},
    "/v1/rerank": {"query": "q", "documents": ["a"]},
    "/v1/reranking": {"query": "q", "documents": ["a"]},
    "/v1/messages": {"model": "m", "max_tokens": 2, "messages": CHAT[1:]},  # Anthropic: system apart
    "/v1/messages/count_tokens": {"model": "m", "messages": CHAT[1:]},
    "/v1/responses": {"model": "m", "input": "Hello", "max_output_tokens": 2},
    "/responses": {"model": "m", "input": "Hello", "max_output_tokens": 2},
    "/v1/responses/input_tokens": {"input": "Hello"},
    "/responses/input_tokens": {"input": "Hello"},
    "/v1/chat/completions/input_tokens": {"messages": CHAT},
    "/chat/completions/input_tokens": {"messages": CHAT},
    "/lora-adapters": [],  # no adapters loaded: an empty list sets nothing
}
# With the right key these answer 501 on this server (no --embeddings/--reranking; SmolLM2 has
# no fill-in-the-middle tokens): not 401 is what matters.
NOT_SUPPORTED = {"/infill", "/embedding", "/embeddings", "/v1/embeddings",
                 "/rerank", "/reranking", "/v1/rerank", "/v1/reranking"}


def _endpoints() -> list[tuple[str, str]]:
    """Every (method, path) the app serves."""
    out = set()
    for h in ROUTES:
        if h is webui.static_file:  # the Web UI's files: public, as llama-server's (tests/test_webui.py)
            continue
        for path in h.paths:
            for method in h.http_methods:
                out.add((method, path))
    return sorted(out)


ENDPOINTS = _endpoints()
PROTECTED = [(m, p) for m, p in ENDPOINTS if p not in PUBLIC]


@pytest.fixture(scope="module")
def server():
    s = LoggedServer("--api-key", ",".join(KEYS), "--metrics", "--props", "-c", "512", "-np", "2", "-n", "4")
    try:
        s.srv.wait_listening()
        s.loading = watch_loading(s.srv.url)
        s.srv.wait_ready()
        yield s
    finally:
        s.stop()


def watch_loading(url: str) -> list[httpx.Response]:
    """/health, /props (no key), /health, /props, ... from listening until ready."""
    seen = []
    with httpx.Client(base_url=url, timeout=10) as c:
        while len(seen) < 400:
            seen.append(c.get("/health"))
            if seen[-1].status_code == 200:
                break
            seen.append(c.get("/props"))
    return seen


@pytest.fixture(scope="module")
def client(server):
    with server.srv.client() as c:
        yield c


# Routes with path parameters, as a request that succeeds (erase needs no --slot-save-path).
URLS = {"/slots/{id_slot:str}": "/slots/0?action=erase"}


def send(c: httpx.Client, method: str, path: str, headers: dict | None = None) -> httpx.Response:
    url = URLS.get(path) or re.sub(r"\{[^}]*\}", "0", path)
    if method == "POST":
        return c.post(url, json=BODIES.get(path, {}), headers=headers)
    return c.request(method, url, headers=headers)


def assert_invalid_key(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}


# -- the key ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": f"Bearer {WRONG}"},
    {"X-Api-Key": WRONG},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {KEYS[0]}x"},  # a key with a suffix is another key
    {"Authorization": f"Bearer {KEYS[0][:-1]}"},  # and so is a prefix of it
], ids=["none", "bearer-wrong", "x-api-key-wrong", "bearer-no-key", "key-plus-suffix", "key-prefix"])
def test_protected_route_refuses_missing_or_wrong_key(client, method, path, headers):
    assert_invalid_key(send(client, method, path, headers))


@pytest.mark.parametrize("method,path", PROTECTED)
def test_protected_route_serves_each_key(client, method, path):
    # first key through Authorization: Bearer, second through X-Api-Key (llama-server reads both)
    for headers in ({"Authorization": f"Bearer {KEYS[0]}"}, {"X-Api-Key": KEYS[1]}):
        r = send(client, method, path, headers)
        if path in NOT_SUPPORTED:
            assert r.status_code == 501, r.text
            assert r.json()["error"]["type"] == "not_supported_error"
        elif path == "/cors-proxy":  # past the key, the disabled feature's own answer (test_cors_proxy.py)
            assert r.status_code == 403 and r.json()["error"]["type"] == "feature_disabled"
        else:
            assert r.status_code == 200, (path, headers, r.text)
            body = r.json() if "json" in r.headers["content-type"] else {}
            assert not (isinstance(body, dict) and body.get("error"))  # Responses carry "error": null


def test_both_headers_each_key(client):
    for key in KEYS:
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-Api-Key": key}):
            r = client.post("/completion", json=BODIES["/completion"], headers=headers)
            assert r.status_code == 200, r.text
            assert isinstance(r.json()["content"], str)


def test_bare_key_in_authorization_is_accepted(client):
    # llama-server strips a "Bearer " prefix if there is one and compares what is left
    r = client.post("/tokenize", json={"content": "Hi"}, headers={"Authorization": KEYS[1]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", sorted(PUBLIC))
@pytest.mark.parametrize("headers", [{}, {"Authorization": f"Bearer {WRONG}"}], ids=["no-key", "wrong-key"])
def test_public_routes_need_no_key(client, path, headers):
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    assert "error" not in r.json()


def test_unknown_route_needs_the_key_first(client):
    # the key is checked before routing, as llama-server's pre-routing middleware does
    assert_invalid_key(client.get("/no/such/route"))
    r = client.get("/no/such/route", headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


def test_streamed_request_with_key(client):
    body = {**BODIES["/completion"], "stream": True}
    assert_invalid_key(client.post("/completion", json=body))
    r = client.post("/completion", json=body, headers={"X-Api-Key": KEYS[0]})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert '"stop":true' in r.text.replace(" ", "")


def test_loading_answers_503_before_asking_for_a_key(server):
    # llama-server checks readiness before the key: 503 "Loading model", not 401. A /props
    # answer counts when the /health after it still said 503 (loading only ends once).
    seen = server.loading
    during = [seen[i] for i in range(1, len(seen) - 1, 2) if seen[i + 1].status_code == 503]
    if not during:
        pytest.skip("the model loaded before a request could be answered")
    for r in during:
        assert r.json() == {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, r.text


# -- the official client -----------------------------------------------------------------------

def test_openai_client_wrong_key_is_authentication_error(server):
    c = openai.OpenAI(api_key=WRONG, base_url=server.srv.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        c.completions.create(model="x", prompt="Hello", max_tokens=2)
    assert e.value.status_code == 401
    assert e.value.body["type"] == "authentication_error"
    assert e.value.body["message"] == "Invalid API Key"
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="x", messages=CHAT, max_tokens=2)


def test_openai_client_right_key_works(server):
    for key in KEYS:
        c = openai.OpenAI(api_key=key, base_url=server.srv.url + "/v1", max_retries=0)
        models = c.models.list()
        assert len(models.data) == 1
        res = c.completions.create(model="x", prompt="Hello", max_tokens=2)
        assert res.choices[0].text is not None
        chat = c.chat.completions.create(model="x", messages=CHAT, max_tokens=2)
        assert len(chat.choices) == 1


# -- CORS -------------------------------------------------------------------------------------

@pytest.mark.parametrize("origin,header,value", [
    ("localhost", "Access-Control-Allow-Origin", "localhost"),
    ("web.mydomain.fr", "Access-Control-Allow-Origin", "web.mydomain.fr"),
    ("origin", "Access-Control-Allow-Credentials", "true"),
    ("web.mydomain.fr", "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
    ("web.mydomain.fr", "Access-Control-Allow-Headers", "*"),
])
@pytest.mark.parametrize("path", ["/completions", "/v1/chat/completions", "/health", "/no/such/route"])
def test_cors_preflight(client, origin, header, value, path):
    # browsers send no key with a preflight: it is answered before the key check
    r = client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "Authorization"})
    assert r.status_code == 200
    assert r.headers[header] == value
    assert r.content == b""


@pytest.mark.parametrize("method,path,headers,status", [
    ("GET", "/health", {}, 200),
    ("GET", "/v1/models", {}, 200),
    ("POST", "/tokenize", {"Authorization": f"Bearer {KEYS[0]}"}, 200),
    ("POST", "/tokenize", {}, 401),  # the browser can read why it was refused
    ("GET", "/nowhere", {"X-Api-Key": KEYS[1]}, 404),
    ("POST", "/embeddings", {"X-Api-Key": KEYS[1]}, 501),
])
def test_cors_origin_echoed_on_answers(client, method, path, headers, status):
    origin = "https://ui.example.org"
    r = send(client, method, path, {**headers, "Origin": origin})
    assert r.status_code == status, r.text
    assert r.headers["Access-Control-Allow-Origin"] == origin


def test_cors_origin_echoed_on_stream(client):
    origin = "http://127.0.0.1:5173"
    r = client.post("/v1/chat/completions", json={**BODIES["/v1/chat/completions"], "stream": True},
                    headers={"Origin": origin, "Authorization": f"Bearer {KEYS[0]}"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == origin
    assert r.text.rstrip().endswith("data: [DONE]")


# -- logs (last: it stops the server) -----------------------------------------------------------

def test_keys_never_logged(server, client):
    for headers in ({"Authorization": f"Bearer {KEYS[0]}"}, {"X-Api-Key": KEYS[1]}, {"X-Api-Key": WRONG},
                    {"Authorization": f"Bearer {WRONG}"}):
        client.post("/completion", json=BODIES["/completion"], headers=headers)
    out = server.stop()
    records = []
    for line in out.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    # the requests above were logged (so the log is there to be searched), without their keys
    statuses = [r.get("status") for r in records if r.get("route") == "/completion"]
    assert 401 in statuses and 200 in statuses, out[-2000:]
    for secret in (*KEYS, WRONG, ",".join(KEYS)):
        assert secret not in out
