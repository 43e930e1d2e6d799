"""llama-server's transport flags through a real server: several --host addresses (IPv4, IPv6
and a UNIX socket), --api-prefix, -to (read and write timeouts), --sse-ping-interval,
--threads-http and --reuse-port.

One server for the module: `--host 127.0.0.1,::1,DIR/llm.sock --api-prefix /llm -to 2
--sse-ping-interval 1 --threads-http 1 -np 1 --reuse-port --api-key KEY` (::1 left out where the
machine has no IPv6 loopback). Protocol from llama.cpp's tools/server (server-http.cpp, the
server-context.cpp stream loop, test_basic.py::test_server_multiple_addresses) and cpp-httplib's
per-read/per-write timeouts. Start-up failures run the command without loading a model.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from service.transport import http_threads
from tests.server_proc import ROOT, SMOLLM2, ServerProcess, free_port

KEY = "sk-transport-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = 2


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = _has_ipv6()


@pytest.fixture(scope="module")
def sock_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("sock") / "llm.sock")


@pytest.fixture(scope="module")
def server(sock_path):
    hosts = ",".join(["127.0.0.1", *(["::1"] if IPV6 else []), sock_path])
    s = ServerProcess("--host", hosts, "--api-prefix", "/llm", "-to", str(TIMEOUT), "--sse-ping-interval", "1",
                      "--threads-http", "1", "-np", "1", "--reuse-port", "--api-key", KEY)
    s.url += "/llm"  # every route, /health too, is under the prefix
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def clients(server, sock_path) -> dict[str, httpx.Client]:
    base = server.url.replace("http://127.0.0.1", "")  # :PORT/llm
    out = {"ipv4": httpx.Client(base_url=f"http://127.0.0.1{base}", timeout=60),
           "unix": httpx.Client(base_url="http://llm/llm", transport=httpx.HTTPTransport(uds=sock_path), timeout=60)}
    if IPV6:
        out["ipv6"] = httpx.Client(base_url=f"http://[::1]{base}", timeout=60)
    return out


def test_every_address_serves(server, sock_path):
    """Each address answers /health, refuses a request without the key and streams a completion,
    all at once (upstream's test_server_multiple_addresses, with the UNIX socket added)."""
    results = {}

    def check(name: str, c: httpx.Client) -> None:
        assert c.get("/health").status_code == 200
        assert c.post("/v1/completions", json={}).status_code == 401
        with c.stream("POST", "/v1/completions", headers=AUTH,
                      json={"prompt": "Once upon a time", "max_tokens": 8, "stream": True}) as r:
            events = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
        results[name] = len(events) > 1 and events[-1] == "data: [DONE]"

    cs = clients(server, sock_path)
    threads = [threading.Thread(target=check, args=item) for item in cs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {name: True for name in cs}


def test_listening_line_names_every_address(server, sock_path):
    line = next(json.loads(ln) for ln in server.output().splitlines() if '"server is listening"' in ln)
    port = server.port
    assert line["addresses"] == [f"http://127.0.0.1:{port}", *([f"http://[::1]:{port}"] if IPV6 else []),
                                 f"unix://{sock_path}"]
    assert line["http_threads"] == 1


def test_api_prefix(server):
    root = f"http://127.0.0.1:{server.port}"
    with httpx.Client(timeout=30) as c:
        assert c.get(server.url + "/health").json() == {"status": "ok"}  # public under the prefix too
        assert c.post(server.url + "/tokenize", json={"content": "hi"}, headers=AUTH).status_code == 200
        # un-prefixed paths are not routes: the key is still asked first, as llama-server does
        assert c.post(root + "/tokenize", json={"content": "hi"}).status_code == 401
        for r in (c.post(root + "/tokenize", json={"content": "hi"}, headers=AUTH), c.get(root + "/health")):
            assert r.status_code == 404 and r.json()["error"]["message"] == "File Not Found"
        assert c.options(root + "/anything", headers={"Origin": "http://x"}).status_code == 200  # preflight


def test_threads_http_one_still_serves_concurrent_chats(server):
    """--threads-http 1: template rendering of three chats shares one worker thread; all finish."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        out = []
        threads = [threading.Thread(target=lambda: out.append(c.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).status_code)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert out == [200, 200, 200]


def test_http_threads_default_is_llama_servers():
    assert http_threads(3, 4) == 3
    assert http_threads(-1, 4) >= 8 and http_threads(0, 1) >= 5


def test_reuse_port(server):
    # a socket may bind the served port only if both it and the server's socket have SO_REUSEPORT
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", server.port))


# -- -to: read and write timeouts ---------------------------------------------------------------

def raw(server, data: bytes, wait: float = 10, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", server.port))
    s.settimeout(wait)
    s.sendall(data)
    return s


def read_all(s: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def post_head(body_len: int, path: str = "/llm/tokenize") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_len}\r\n\r\n").encode()


BODY = b'{"content": "hello world"}'


def test_stalled_body_gets_400_and_close(server):
    t0 = time.monotonic()
    with raw(server, post_head(len(BODY)) + BODY[:10]) as s:
        answer = read_all(s)  # ends: the server closes the connection
    waited = time.monotonic() - t0
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head
    assert json.loads(body)["error"] == {"code": 400, "type": "invalid_request_error",
                                         "message": f"request body timed out: no data for {TIMEOUT} s"}
    assert TIMEOUT - 0.5 < waited < TIMEOUT + 3


def test_trickled_body_slower_than_the_timeout_in_total_is_read(server):
    with raw(server, post_head(len(BODY))) as s:
        for i in range(0, len(BODY), 3):  # 9 pieces, 0.4 s apart: 3.6 s in all, never 2 s silent
            time.sleep(0.4)
            s.sendall(BODY[i:i + 3])
        answer = b""
        while b'"tokens":[' not in answer and (chunk := s.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"tokens":[' in answer


def test_stalled_head_is_dropped(server):
    t0 = time.monotonic()
    with raw(server, post_head(len(BODY))[:25]) as s:
        assert read_all(s) == b""  # no request yet, so no answer: the connection just ends
    assert TIMEOUT - 0.5 < time.monotonic() - t0 < TIMEOUT + 3


def test_unread_response_is_abandoned(server):
    """A client that stops reading a large answer (8.7 MB) loses the connection after -to seconds
    of no progress, instead of holding it (and the answer's memory) forever."""
    body = json.dumps({"content": "hello world " * 150000, "with_pieces": True}).encode()
    with raw(server, post_head(len(body)) + body, rcvbuf=4096) as s:
        time.sleep(TIMEOUT + 3)
        got = read_all(s)
    head = got.partition(b"\r\n\r\n")[0]
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert head.startswith(b"HTTP/1.1 200") and len(got) - len(head) - 4 < length
    assert '"doing": "writing the response"' in server.output()


def test_slow_reader_gets_the_whole_response(server):
    """Reading the same answer slowly takes several times -to, but it progresses: it is kept."""
    body = json.dumps({"content": "hello world " * 150000, "with_pieces": True}).encode()
    got = b""
    with raw(server, post_head(len(body)) + body, wait=30, rcvbuf=65536) as s:
        while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + int(
                got.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
            chunk = s.recv(65536)
            assert chunk, f"dropped after {len(got)} bytes"
            got += chunk
            time.sleep(0.02)
    assert json.loads(got.partition(b"\r\n\r\n")[2])["tokens"][0] == {"id": 28120, "piece": "hello"}


# -- --sse-ping-interval ------------------------------------------------------------------------

def test_sse_pings_while_a_stream_waits(server):
    """With the one slot busy, a second stream waits; after 1 s of silence it gets `:\\n\\n`
    comments, then its events once the slot is free."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        with c.stream("POST", "/completion", json={"prompt": "Once upon a time", "n_predict": 4000,
                                                    "ignore_eos": True, "stream": True}) as busy:
            busy_chunks = busy.iter_raw()  # (kept: a dropped iterator closes the connection)
            assert next(b for b in busy_chunks if b != b":\n\n").startswith(b"data: ")  # the slot is taken
            with c.stream("POST", "/completion", json={"prompt": "Hi", "n_predict": 2, "stream": True}) as waiting:
                chunks = waiting.iter_raw()
                t0 = time.monotonic()
                first = next(chunks)
                assert first == b":\n\n", server.output()[-3000:]
                assert time.monotonic() - t0 > 0.8
                busy.close()  # frees the slot: its generation is cancelled
                rest = b"".join(chunks)
    events = [b for b in rest.split(b"\n\n") if b and b != b":"]
    assert events and all(e.startswith(b"data: ") for e in events)
    assert json.loads(events[-1][6:])["stop"] is True


# -- start-up refusals (no model is loaded) -----------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", "-m", str(SMOLLM2), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_port_0_with_two_tcp_addresses_exits_2():
    out = run_cli("--host", "127.0.0.1,localhost", "--port", "0")
    assert out.returncode == 2 and "--port 0 is not supported with multiple TCP addresses" in out.stderr


def test_empty_host_exits_2():
    out = run_cli("--host", " , ")
    assert out.returncode == 2 and "--host requires at least one address" in out.stderr


def test_address_in_use_exits_1():
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        out = run_cli("--host", "127.0.0.1", "--port", str(port))
    assert out.returncode == 1 and f"couldn't bind HTTP server socket 127.0.0.1:{port}" in out.stderr
