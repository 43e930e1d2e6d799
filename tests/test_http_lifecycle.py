"""The server's life: 503 while loading, one JSON log line per request, SIGTERM drains
streams in flight and exits 0, a second signal exits at once, bad models exit 1."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx

from tests.server_proc import GEMMA3, ServerProcess


def test_503_while_loading_then_ready():
    s = ServerProcess("-c", "1024", "-np", "1", model=GEMMA3)
    try:
        s.wait_listening()
        with s.client() as c:
            h = c.get("/health")
            comp = c.post("/completion", json={"prompt": "hi", "n_predict": 1})
        assert h.status_code == 503 and h.json() == {
            "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        assert comp.status_code == 503 and comp.json()["error"]["type"] == "unavailable_error"
        s.wait_ready()
        with s.client() as c:
            assert c.get("/health").json() == {"status": "ok"}
            assert c.post("/completion", json={"prompt": "hi", "n_predict": 2}).status_code == 200
    finally:
        assert s.stop() == 0


def test_sigterm_drains_a_stream_then_exits_0_and_logs_each_request():
    s = ServerProcess("-c", "1024", "-np", "2", "--drain-timeout", "20", "--api-key", "sekrit-key").wait_ready()
    auth = {"Authorization": "Bearer sekrit-key"}
    got: dict = {}

    def stream():
        with httpx.Client(base_url=s.url, timeout=60, headers=auth) as c:
            r = c.post("/completion", json={"prompt": "Tell me a long story", "n_predict": 150, "ignore_eos": True,
                                            "stream": True, "temperature": 0})
            got["text"] = r.text

    t = threading.Thread(target=stream)
    t.start()
    time.sleep(0.5)  # the stream is running
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with httpx.Client(base_url=s.url, timeout=5, headers=auth) as c:
        assert c.get("/health").status_code == 503
        late = c.post("/completion", json={"prompt": "hi", "n_predict": 1})
        assert late.status_code == 503 and late.json()["error"]["type"] == "unavailable_error"
    t.join(60)
    assert s.proc.wait(30) == 0
    events = [json.loads(b[6:]) for b in got["text"].split("\n\n") if b.startswith("data: ")]
    assert events[-1]["stop"] is True and events[-1]["tokens_predicted"] == 150
    lines = [json.loads(ln) for ln in s.output().splitlines() if ln.startswith("{")]
    reqs = [ln for ln in lines if ln.get("event") == "request" and ln.get("route") == "/completion"]
    done = [ln for ln in reqs if ln["status"] == 200]
    assert done and done[0]["predicted_tokens"] == 150 and "slot" in done[0] and "prompt" not in done[0]
    assert any(ln["status"] == 503 for ln in reqs)
    assert all("sekrit" not in json.dumps(ln) for ln in lines)


def test_second_signal_exits_at_once():
    s = ServerProcess("-c", "1024", "-np", "1", "--drain-timeout", "60").wait_ready()

    def stream():
        with httpx.Client(base_url=s.url, timeout=60) as c:
            try:
                c.post("/completion", json={"prompt": "Story:", "n_predict": 3000, "ignore_eos": True, "stream": True})
            except httpx.TransportError:
                pass

    t = threading.Thread(target=stream)
    t.start()
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert s.proc.poll() is None  # still draining the stream
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    s.proc.wait(10)
    assert time.monotonic() - t0 < 5 and s.proc.returncode != 0
    t.join(10)


def test_a_broken_model_file_exits_1(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    s = ServerProcess("-c", "256", model=bad)
    assert s.proc.wait(60) == 1
    assert "error" in s.output()
