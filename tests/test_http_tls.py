"""HTTPS with --ssl-key-file and --ssl-cert-file, through a real server.

A self-signed certificate for 127.0.0.1 is made with the `openssl` command for the module; the
client trusts exactly that certificate. As in llama-server, HTTPS needs both files: with one
of them the server serves plain HTTP (and says so), and a key or certificate it cannot load
fails the start (exit 1) before the model loads.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from tests.server_proc import ROOT, SMOLLM2, ServerProcess

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(crt), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, crt


@pytest.fixture(scope="module")
def server(cert):
    key, crt = cert
    s = ServerProcess("--ssl-key-file", str(key), "--ssl-cert-file", str(crt), "-n", "4")
    s.url = s.url.replace("http://", "https://")
    trust = ssl.create_default_context(cafile=str(crt))
    try:
        deadline = time.monotonic() + 300  # (ServerProcess.wait_ready asks over plain HTTP)
        while True:
            assert s.proc.poll() is None, s.output()
            try:
                if httpx.get(s.url + "/health", verify=trust, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.1)
        yield s, trust
    finally:
        s.stop()


def test_health_and_completion_over_https(server):
    s, trust = server
    with httpx.Client(base_url=s.url, verify=trust, timeout=120) as c:
        assert c.get("/health").json() == {"status": "ok"}
        r = c.post("/completion", json={"prompt": "Hello", "n_predict": 2})
        assert r.status_code == 200 and r.json()["tokens_predicted"] == 2
        with c.stream("POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                                                            "max_tokens": 2, "stream": True}) as r:
            assert r.read().rstrip().endswith(b"data: [DONE]")
    line = next(json.loads(ln) for ln in s.output().splitlines() if '"server is listening"' in ln)
    assert line["addresses"] == [s.url]


def test_plain_http_gets_no_answer(server):
    s, _ = server
    with pytest.raises(httpx.TransportError):
        httpx.get(s.url.replace("https://", "http://") + "/health", timeout=10)


def test_untrusted_client_is_refused(server):
    s, _ = server
    with pytest.raises(httpx.ConnectError):
        httpx.get(s.url + "/health", timeout=10)  # the default CAs do not know this certificate


def test_one_file_alone_serves_plain_http(cert):
    s = ServerProcess("--ssl-cert-file", str(cert[1]))
    try:
        assert httpx.get(s.wait_ready().url + "/health").status_code == 200
    finally:
        s.stop()
    assert "HTTPS needs both --ssl-key-file and --ssl-cert-file: serving plain HTTP" in s.output()


def test_unloadable_key_exits_1(cert, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    out = subprocess.run([sys.executable, "-m", "service.cli", "-m", str(SMOLLM2), "--port", "0",
                          "--ssl-key-file", str(bad), "--ssl-cert-file", str(cert[1])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "cannot load the TLS key or certificate" in out.stderr
