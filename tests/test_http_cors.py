"""CORS as llama-server answers it (--cors-origins, --cors-methods, --cors-headers,
--cors-credentials; the localhost-only default with --tools), through real servers.

The contract is llama.cpp's tools/server/tests/unit/test_security.py (test_cors_options,
test_cors_origins_localhost_reflects/rejects, test_cors_origins_defaults_to_localhost_with_tools_enabled)
and its HTTP layer (server-http.cpp): the headers are read as that suite reads them, with
`requests` and `dict(response.headers)`, so their names must come in llama-server's case.
Three servers: the defaults (with an API key, as upstream), `--cors-origins localhost` with the
other three flags changed, and `--tools all` without --cors-origins. The policy's other modes
(a literal origin, a list) are checked on `Cors` directly.
"""

from __future__ import annotations

import pytest
import requests

from service.api.gate import Cors, origin_is_local
from service.args import parse_args
from tests.server_proc import ServerProcess

KEY = "sk-cors-test-key"
ACAO = "Access-Control-Allow-Origin"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Authorization"}
LOCAL = ["http://localhost", "http://localhost:8080", "http://127.0.0.1", "http://127.0.0.1:3000", "http://[::1]",
         "http://[::1]:3000", "https://localhost:8443"]
NOT_LOCAL = ["http://web.mydomain.fr", "http://evil.com", "http://notlocalhost", "http://localhost.evil.com",
             "localhost", "ftp://localhost", "http://evil.com@", "http://[::1", "http://localhost:port"]


def start(*args: str):
    s = ServerProcess(*args)
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def default():
    yield from start("--api-key", KEY)


@pytest.fixture(scope="module")
def local():
    yield from start("--cors-origins", "localhost", "--cors-methods", "GET, POST", "--cors-headers",
                     "Authorization, Content-Type", "--no-cors-credentials")


@pytest.fixture(scope="module")
def tools():
    yield from start("--tools", "all")


def options(server, origin: str, path: str = "/completions") -> tuple[int, dict, bytes]:
    r = requests.options(server.url + path, headers={"Origin": origin, **PREFLIGHT}, timeout=30)
    return r.status_code, dict(r.headers), r.content


# -- defaults: credentials on, origins "*": the Origin is echoed --------------------------------

@pytest.mark.parametrize("origin,header,value", [
    ("localhost", ACAO, "localhost"),
    ("web.mydomain.fr", ACAO, "web.mydomain.fr"),
    ("origin", "Access-Control-Allow-Credentials", "true"),
    ("web.mydomain.fr", "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
    ("web.mydomain.fr", "Access-Control-Allow-Headers", "*"),
])
@pytest.mark.parametrize("path", ["/completions", "/health", "/no/such/route"])
def test_preflight_defaults(default, origin, header, value, path):
    status, headers, body = options(default, origin, path)  # no key: browsers send none with a preflight
    assert status == 200 and body == b""
    assert headers[header] == value  # exact name: upstream reads a plain dict
    assert headers["Content-Type"] == "text/html"


@pytest.mark.parametrize("method,path,auth,status", [
    ("GET", "/health", False, 200), ("POST", "/tokenize", True, 200), ("POST", "/tokenize", False, 401),
    ("GET", "/nowhere", True, 404),
])
def test_answers_echo_the_origin_only(default, method, path, auth, status):
    origin = "https://ui.example.org"
    headers = {"Origin": origin, **({"Authorization": f"Bearer {KEY}"} if auth else {})}
    r = requests.request(method, default.url + path, json={"content": "hi"} if method == "POST" else None,
                         headers=headers, timeout=30)
    assert r.status_code == status, r.text
    h = dict(r.headers)
    assert h[ACAO] == origin and h["Vary"] == "Origin"
    # the preflight's headers are the preflight's: llama-server adds only the origin elsewhere
    assert not {"Access-Control-Allow-Credentials", "Access-Control-Allow-Methods"} & set(h)


def test_stream_echoes_the_origin(default):
    r = requests.post(default.url + "/completion", json={"prompt": "Hi", "n_predict": 2, "stream": True},
                      headers={"Origin": "http://127.0.0.1:5173", "Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 200 and dict(r.headers)[ACAO] == "http://127.0.0.1:5173"
    assert r.text.startswith("data: ")


def test_no_origin_no_allow_origin(default):
    r = requests.get(default.url + "/health", timeout=30)
    assert ACAO not in r.headers


# -- --cors-origins localhost, methods, headers, --no-cors-credentials --------------------------

@pytest.mark.parametrize("origin", LOCAL)
def test_localhost_reflects(local, origin):
    status, headers, _ = options(local, origin)
    assert status == 200 and headers[ACAO] == origin


@pytest.mark.parametrize("origin", NOT_LOCAL)
def test_localhost_rejects(local, origin):
    status, headers, _ = options(local, origin)
    assert status == 200 and ACAO not in headers and headers["Vary"] == "Origin"


def test_localhost_preflight_carries_the_configured_flags(local):
    _, headers, _ = options(local, "http://localhost:8080")
    assert headers["Access-Control-Allow-Credentials"] == "false"
    assert headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"


def test_localhost_on_answers(local):
    ok = requests.post(local.url + "/tokenize", json={"content": "hi"}, headers={"Origin": "http://127.0.0.1:3000"},
                       timeout=30)
    assert ok.status_code == 200 and dict(ok.headers)[ACAO] == "http://127.0.0.1:3000"
    other = requests.post(local.url + "/tokenize", json={"content": "hi"}, headers={"Origin": "http://evil.com"},
                          timeout=30)
    assert other.status_code == 200 and ACAO not in other.headers  # served; the browser hides it


# -- --tools: the default narrows to localhost --------------------------------------------------

def test_tools_default_to_localhost(tools):
    assert options(tools, "http://localhost:8080")[1][ACAO] == "http://localhost:8080"
    assert ACAO not in options(tools, "http://evil.com")[1]


# -- the policy's other modes -------------------------------------------------------------------

def cors(*argv: str) -> Cors:
    return Cors(parse_args(list(argv), {}))


def test_literal_modes():
    # credentials off: "*" is sent as it is; a single origin is sent whatever the request's
    assert cors("--no-cors-credentials").headers("http://a.example") == [(ACAO.encode(), b"*")]
    assert cors("--cors-origins", "https://ui.example").headers("http://a.example") == [
        (ACAO.encode(), b"https://ui.example")]
    assert cors("--cors-origins", "https://ui.example").headers(None) == [(ACAO.encode(), b"https://ui.example")]


def test_a_list_reflects_its_members():
    c = cors("--cors-origins", "https://a.example, https://b.example")
    assert c.headers("https://b.example") == [(ACAO.encode(), b"https://b.example"), (b"Vary", b"Origin")]
    assert c.headers("https://c.example") == [(b"Vary", b"Origin")]


def test_explicit_origins_win_over_the_tools_default():
    assert cors("--tools", "all", "--cors-origins", "https://ui.example").origins == "https://ui.example"
    assert cors("--agent").origins == "localhost"


@pytest.mark.parametrize("origin", LOCAL)
def test_origin_is_local(origin):
    assert origin_is_local(origin)


@pytest.mark.parametrize("origin", NOT_LOCAL)
def test_origin_is_not_local(origin):
    assert not origin_is_local(origin)
