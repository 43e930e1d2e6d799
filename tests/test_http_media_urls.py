"""Image URLs that are not data URIs, through a real server (Gemma 3 270M + the tiny gemma3 projector),
as llama-server takes them: an http URL is downloaded (a loopback server here), a file:// URL is read
under --media-path; each gives the same answer as the same image sent inline. What llama-server
refuses is a 400 in its shape: a failed or oversized download, a file:// URL without --media-path,
a path with "..", a missing file."""

from __future__ import annotations

import base64
import functools
import http.server
import threading

import pytest

from tests.server_proc import GEMMA3, ServerProcess
from tests.vision_files import fixture, image, tiny_mmproj

FIX = fixture()
NAME = next(c for c in FIX["cases"] if c["route"] == "chat")["images"][0]
SUFFIX = "jpg" if NAME.startswith("jpg") else "png"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A directory with the image, a subdirectory copy and an 11 MB file."""
    d = tmp_path_factory.mktemp("media")
    (d / f"a.{SUFFIX}").write_bytes(image(NAME))
    (d / "sub").mkdir()
    (d / "sub" / f"b.{SUFFIX}").write_bytes(image(NAME))
    (d / "big.bin").write_bytes(b"\0" * (11 * 1024 * 1024))
    return d


@pytest.fixture(scope="module")
def web(files):
    """A loopback HTTP server for the directory; its base URL."""
    handler = functools.partial(_Quiet, directory=str(files))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _server(tmp_path_factory, *args):
    mm = tiny_mmproj(tmp_path_factory.mktemp("mm") / "tiny.gguf")
    return ServerProcess("--mmproj", str(mm), "-c", "512", "-np", "1", "--chat-template", "chatml", *args,
                         model=GEMMA3, env={"LLAMA_MEDIA_MARKER": FIX["marker"]}).wait_ready()


@pytest.fixture(scope="module")
def server(tmp_path_factory, files):
    s = _server(tmp_path_factory, "--media-path", str(files))
    yield s
    s.stop()


def chat(c, url: str):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]
    return c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 4, "temperature": 0}, timeout=60)


def answer(r) -> tuple[str, int]:
    assert r.status_code == 200, r.text
    body = r.json()
    return body["choices"][0]["message"]["content"], body["usage"]["prompt_tokens"]


def test_http_and_file_urls_give_the_inline_images_answer(server, web):
    c = server.client()
    inline = answer(chat(c, f"data:image/{'jpeg' if SUFFIX == 'jpg' else 'png'};base64,"
                            + base64.b64encode(image(NAME)).decode()))
    assert inline[1] > 16  # the tiny projector's 16 image rows are in the prompt
    for url in (f"{web}/a.{SUFFIX}", f"{web}/sub/b.{SUFFIX}", f"file://a.{SUFFIX}", f"file://sub/b.{SUFFIX}",
                f"file:///a.{SUFFIX}"):  # llama-server reads "dir/" + "/a.png": still in the directory
        assert answer(chat(c, url)) == inline, url


@pytest.mark.parametrize("path,message", [
    ("/missing.png", "Failed to download image (HTTP 404)"),
    ("/big.bin", "larger than 10485760 bytes"),
])
def test_a_failed_download_is_a_400(server, web, path, message):
    r = chat(server.client(), web + path)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_an_unreachable_url_is_a_400(server):
    r = chat(server.client(), "http://127.0.0.1:9/a.png")  # the discard port: nothing listens
    assert r.status_code == 400 and "Failed to download image" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("url,message", [
    ("file://../a.png", "file path is not allowed: ../a.png"),
    ("file://sub/../../etc/passwd", "file path is not allowed"),
    ("file://a.png.", "file path is not allowed"),
    ("file://a?.png", "file path is not allowed"),
    ("file://nope.png", "file does not exist or cannot be opened: nope.png"),
])
def test_file_urls_that_llama_server_refuses(server, url, message):
    r = chat(server.client(), url)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text


def test_without_media_path_file_urls_are_refused(tmp_path_factory, files):
    s = _server(tmp_path_factory)
    try:
        r = chat(s.client(), f"file://a.{SUFFIX}")
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"] == "file:// URLs are not allowed unless --media-path is specified"
    finally:
        s.stop()


def test_media_path_must_be_a_directory(tmp_path):
    s = ServerProcess("--media-path", str(tmp_path / "nope"))
    assert s.proc.wait(timeout=60) != 0
    assert "--media-path" in s.output() and "not a directory" in s.output()
