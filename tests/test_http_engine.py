"""The engine loop (service/engine/engine.py) through the HTTP server: a step that fails for one
request. tests.fault_server is the real server with one fault injected: a request with seed
FAULT_SEED raises inside the engine step (Slot.on_token) after FAULT_AFTER tokens.

The failing request gets llama-server's error (500, type server_error; a stream ends with a
`data: {"error": ...}` event after the tokens it had sent); a request generating beside it in the same
batches goes on to its end with the text it has alone; the failed slot serves the next request
from a consistent cache.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.fault_server import FAULT_AFTER, FAULT_MESSAGE, FAULT_SEED
from tests.server_proc import ServerProcess, sse_events

N_LONG = 200
LONG = {"prompt": "Once upon a time", "n_predict": N_LONG, "ignore_eos": True, "temperature": 0, "cache_prompt": False}
FAULTY = {"prompt": "The capital of France is", "n_predict": 32, "temperature": 0, "seed": FAULT_SEED}


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("-c", "1024", "-np", "2", module="tests.fault_server")
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def _server_error(err: dict) -> None:
    assert err["code"] == 500 and err["type"] == "server_error", err
    assert FAULT_MESSAGE in err["message"], err


def test_a_failing_request_fails_alone(server):
    with server.client() as c:
        solo = c.post("/completion", json={**LONG, "id_slot": 0}).json()
        assert solo["tokens_predicted"] == N_LONG
        long_events: list = []

        def long_stream():
            with server.client() as c2:
                long_events.extend(sse_events(c2.post("/completion", json={**LONG, "id_slot": 0, "stream": True})))

        t = threading.Thread(target=long_stream)
        t.start()
        try:
            while not (slot0 := c.get("/slots").json()[0])["is_processing"]:  # the long one generates first
                assert t.is_alive(), long_events
                time.sleep(0.01)
            ahead = N_LONG - slot0["next_token"][0]["n_decoded"]
            r = c.post("/completion", json={**FAULTY, "id_slot": 1})
            s = c.post("/completion", json={**FAULTY, "id_slot": 1, "stream": True})
        finally:
            t.join(300)
        # the failing requests need a few steps each: they ran beside the long one
        assert ahead > N_LONG // 2, "the long request was nearly done before the failing ones came"
        assert r.status_code == 500 and r.headers["content-type"].startswith("application/json")
        _server_error(r.json()["error"])
        events = sse_events(s)
        assert [kind for kind, _ in events] == ["data"] * FAULT_AFTER + ["error"], events
        _server_error(events[-1][1])
        # the request beside it was not touched
        assert [kind for kind, _ in long_events] == ["data"] * len(long_events), long_events[-1]
        assert long_events[-1][1]["stop"] is True and long_events[-1][1]["tokens_predicted"] == N_LONG
        assert "".join(e["content"] for _, e in long_events) == solo["content"]
        # the failed slot is idle and serves again, from a cache that matches its tokens
        assert not c.get("/slots").json()[1]["is_processing"]
        fine = {**FAULTY, "seed": 1}
        again = c.post("/completion", json={**fine, "id_slot": 1}).json()
        other = c.post("/completion", json={**fine, "id_slot": 0, "cache_prompt": False}).json()
        assert again["tokens_cached"] > 0 and again["content"] == other["content"]
        assert c.get("/health").status_code == 200
