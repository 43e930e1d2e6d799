"""--drain-timeout is a deadline: after SIGTERM, streams that outlast it are ended by the engine
with a final event (llama-server's shape for a generation its time limit stopped: stop true,
stop_type "limit"; finish_reason "length" and [DONE] on the OpenAI routes; a task still queued
gets a 503 error event), and the process exits 0 shortly after the deadline.

The streams ask for far more tokens than the machine can make before the deadline (8,000 in a
slot of 8,192: minutes at this engine's CPU speed, tens of seconds even on a fast GPU), so the
deadline, not the stream's end, must stop them. Without the deadline the process lives until the
streams finish, and the exit-time assertions fail. (A second signal exiting at once:
test_http_lifecycle.test_second_signal_exits_at_once.)
"""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx

from tests.server_proc import ServerProcess

DRAIN_S = 2.0
# after the deadline: the engine's last step, the final events' delivery and uvicorn's shutdown
EXIT_SLACK_S = 1.5
N_PREDICT = 8000
UNAVAILABLE = {"code": 503, "message": "Server is shutting down", "type": "unavailable_error"}


class StreamReader(threading.Thread):
    """Posts one streaming request and keeps every SSE block as (field, value) as it arrives; a
    connection cut before the body ended is kept in `cut`."""

    def __init__(self, url: str, path: str, body: dict):
        super().__init__(daemon=True)
        self.url, self.path, self.body = url, path, body
        self.blocks: list[tuple[str, str]] = []
        self.first_token = threading.Event()
        self.status = 0
        self.cut: Exception | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=120) as c, c.stream("POST", self.path, json=self.body) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if not line or line.startswith(":"):
                        continue
                    field, _, value = line.partition(": ")
                    self.blocks.append((field, value))
                    if field == "data" and value != "[DONE]" and _has_text(json.loads(value)):
                        self.first_token.set()
        except httpx.TransportError as e:
            self.cut = e

    def data(self) -> list[dict]:
        return [json.loads(v) for f, v in self.blocks if f == "data" and v != "[DONE]"]


def _has_text(ev: dict) -> bool:
    if "content" in ev:  # /completion
        return bool(ev["content"])
    return any(ch.get("delta", {}).get("content") for ch in ev.get("choices", []))


def _start(*extra: str) -> ServerProcess:
    return ServerProcess("-np", "1", "-c", "8192", "--drain-timeout", str(int(DRAIN_S)), *extra).wait_ready()


def _sigterm(s: ServerProcess) -> float:
    """Send SIGTERM; returns when (monotonic), to time the exit from."""
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    return t0


def test_deadline_ends_a_running_stream_and_a_queued_one_then_exits_0():
    s = _start()
    try:
        running = StreamReader(s.url, "/completion", {"prompt": "Once upon a time", "n_predict": N_PREDICT,
                                                       "ignore_eos": True, "stream": True, "temperature": 0})
        running.start()
        assert running.first_token.wait(120), running.blocks
        # one slot: this one waits in the engine's queue behind the running stream
        queued = StreamReader(s.url, "/completion", {"prompt": "Hello", "n_predict": 10, "stream": True})
        queued.start()
        time.sleep(0.5)
        t_sig = _sigterm(s)
        time.sleep(0.2)
        with httpx.Client(base_url=s.url, timeout=5) as c:
            late = c.post("/completion", json={"prompt": "hi", "n_predict": 1})
            health = c.get("/health")
        assert (late.status_code, late.json()) == (503, {"error": UNAVAILABLE})
        assert (health.status_code, health.json()) == (503, {"error": UNAVAILABLE})
        rc = s.proc.wait(DRAIN_S + 30)
        took = time.monotonic() - t_sig
    finally:
        s.stop()
    assert rc == 0
    assert DRAIN_S - 0.2 < took < DRAIN_S + EXIT_SLACK_S, took  # it waited for the grace, then no longer
    running.join(5)
    queued.join(5)
    assert running.cut is None and running.status == 200
    last = running.data()[-1]
    assert last["stop"] is True and last["stop_type"] == "limit", last
    assert 0 < last["tokens_predicted"] < N_PREDICT
    # every token made before the cut was streamed: none was held back and lost
    assert sum(len(ev.get("tokens", [])) for ev in running.data()[:-1]) == last["tokens_predicted"]
    assert queued.cut is None and queued.status == 200
    assert queued.blocks and queued.blocks[-1][0] == "data", queued.blocks  # data: {"error": ...}
    assert json.loads(queued.blocks[-1][1]) == {"error": UNAVAILABLE}
    lines = [json.loads(ln) for ln in s.output().splitlines() if ln.startswith("{")]
    assert any(ln.get("event") == "drain deadline: ending generations" for ln in lines)


def test_openai_chat_stream_ends_with_a_finish_reason_and_done():
    s = _start()
    try:
        chat = StreamReader(s.url, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": N_PREDICT,
            "ignore_eos": True, "stream": True, "temperature": 0})
        chat.start()
        assert chat.first_token.wait(120), chat.blocks
        t_sig = _sigterm(s)
        rc = s.proc.wait(DRAIN_S + 30)
        took = time.monotonic() - t_sig
    finally:
        s.stop()
    assert rc == 0 and took < DRAIN_S + EXIT_SLACK_S, (rc, took)
    chat.join(5)
    assert chat.cut is None and chat.status == 200
    assert chat.blocks[-1] == ("data", "[DONE]"), chat.blocks[-3:]
    reasons = [ch["finish_reason"] for ev in chat.data() for ch in ev.get("choices", [])]
    assert reasons[-1] == "length" and set(reasons[:-1]) == {None}, reasons[-3:]
