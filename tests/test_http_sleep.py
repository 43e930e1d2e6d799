"""--sleep-idle-seconds on a real server: after a second idle the model's memory goes; /health,
/props, /models and /metrics answer without waking it; a request that needs the model wakes it
and gets the same answer as before the sleep."""

from __future__ import annotations

import time

import pytest

from tests.minilm import model_path
from tests.server_proc import SMOLLM2, ServerProcess
from tests.served import module_server

GREEDY = {"prompt": "The capital of France is", "n_predict": 8, "temperature": 0}

server = module_server("server", "-c", "512", "-np", "2", "--metrics", "--sleep-idle-seconds", "1")


def sleeping(c) -> bool:
    r = c.get("/props")
    assert r.status_code == 200
    return r.json()["is_sleeping"]


def wait_asleep(c, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not sleeping(c):
        assert time.monotonic() < deadline, "the server did not fall asleep"
        time.sleep(0.1)


def anon_rss_mib(pid: int) -> float:
    """Private memory of the process (file pages, such as the GGUF mapping, left out)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon")) / 1024


def test_sleep_frees_the_model_and_a_generation_wakes_it(server):
    with server.client() as c:
        before = c.post("/completion", json=GREEDY).json()["content"]
        awake = anon_rss_mib(server.proc.pid)
        wait_asleep(c)
        asleep = anon_rss_mib(server.proc.pid)
        assert awake - asleep > 80, (awake, asleep)  # SmolLM2: 92-94 MB came back here (60 before prefer_mappings)
        for path in ("/health", "/models", "/v1/models", "/metrics", "/props"):
            assert c.get(path).status_code == 200, path
        assert sleeping(c)
        after = c.post("/completion", json=GREEDY).json()
        assert after["content"] == before and after["tokens_cached"] == 0  # the cache went with the sleep
        assert not sleeping(c)
        assert "server is entering sleeping state" in server.output()


@pytest.mark.parametrize("method,path,body", [("POST", "/tokenize", {"content": "Hello"}),
                                              ("GET", "/slots", None),
                                              ("POST", "/apply-template", {"messages": [{"role": "user",
                                                                                         "content": "Hi"}]}),
                                              # token counting wakes it too (llama.cpp's test_sleep)
                                              ("POST", "/chat/completions/input_tokens",
                                               {"messages": [{"role": "user", "content": "Hello world"}]}),
                                              ("POST", "/v1/responses/input_tokens", {"input": "Hello world"}),
                                              ("POST", "/v1/messages/count_tokens",
                                               {"messages": [{"role": "user", "content": "Hello world"}]})])
def test_requests_that_need_the_model_wake_it(server, method, path, body):
    with server.client() as c:
        wait_asleep(c)
        r = c.request(method, path, json=body)
        assert r.status_code == 200, r.text
        assert not sleeping(c)  # reported awake at once, while the weights load again


def test_metrics_while_asleep_repeat_the_last_scrape_and_report_the_bucket_once(server):
    with server.client() as c:
        c.post("/completion", json={**GREEDY, "n_predict": 6})
        c.get("/metrics")  # empties the throughput bucket
        last = c.get("/metrics")
        assert last.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        wait_asleep(c)
        assert c.get("/metrics").text == last.text and sleeping(c)
        assert "process_cpu_seconds_total" not in last.text  # live figures would differ (service.api.metrics)
        c.post("/completion", json={**GREEDY, "n_predict": 6})
        wait_asleep(c)
        first, second = rate(c), rate(c)
        assert first > 0 and second == 0
        c.post("/tokenize", json={"content": "x"})
        assert not sleeping(c)
        assert rate(c) == 0  # not reported again


def test_an_encoder_sleeps_and_wakes_with_the_same_vectors():
    """An encoder (all-MiniLM-L6-v2) has its own weights and forward: those come back after a sleep."""
    s = ServerProcess("--embeddings", "-c", "256", "--sleep-idle-seconds", "1", model=model_path())
    try:
        with s.wait_ready().client() as c:
            body = {"input": ["a cat sat on the mat", "the stock market fell"]}
            before = c.post("/v1/embeddings", json=body).json()
            wait_asleep(c)
            after = c.post("/v1/embeddings", json=body)
            assert after.status_code == 200, after.text
            assert [d["embedding"] for d in after.json()["data"]] == [d["embedding"] for d in before["data"]]
    finally:
        s.stop()


def test_a_draft_model_sleeps_with_the_model_and_drafts_after_waking():
    """-md: the draft model's weights go with the sleep too, and its caches start over after it."""
    s = ServerProcess("-c", "512", "-np", "1", "--sleep-idle-seconds", "1", "-md", str(SMOLLM2), "-ngld", "0",
                      "--spec-type", "draft-simple", "--spec-draft-n-max", "4")
    try:
        with s.wait_ready().client() as c:
            body = {**GREEDY, "n_predict": 24}
            before = c.post("/completion", json=body).json()
            awake = anon_rss_mib(s.proc.pid)
            wait_asleep(c)
            asleep = anon_rss_mib(s.proc.pid)
            assert awake - asleep > 160, (awake, asleep)  # two copies of SmolLM2 (92-94 MB for one)
            after = c.post("/completion", json=body).json()
            assert after["content"] == before["content"] and after["timings"]["draft_n_accepted"] > 0
    finally:
        s.stop()


def rate(c) -> float:
    return float(c.get("/metrics").text.split("\nllamacpp:predicted_tokens_seconds ")[1].split()[0])


def test_a_reload_that_fails_answers_503_and_the_next_request_reloads():
    """The reload after a sleep can fail (here: an address-space limit set on the process while it
    sleeps, as memory pressure would): the request that woke it gets a 503 in llama-server's shape,
    the server stays up and asleep, and once memory is back the next request reloads and answers."""
    import resource

    import tempfile

    saves = tempfile.mkdtemp()
    s = ServerProcess("-c", "256", "-np", "1", "--sleep-idle-seconds", "1", "--slot-save-path", saves).wait_ready()
    try:
        with s.client() as c:
            before = c.post("/completion", json=GREEDY).json()["content"]
            wait_asleep(c)
            with open(f"/proc/{s.proc.pid}/status") as f:
                vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize")) * 1024
            old = resource.prlimit(s.proc.pid, resource.RLIMIT_AS)
            resource.prlimit(s.proc.pid, resource.RLIMIT_AS, (vm + (16 << 20), old[1]))  # < SmolLM2's ~90 MB
            try:
                r = c.post("/completion", json=GREEDY)
                assert r.status_code == 503, r.text
                err = r.json()["error"]
                assert err["type"] == "unavailable_error" and "could not be reloaded" in err["message"]
                assert sleeping(c) and c.get("/health").status_code == 200
                r = c.post("/slots/0?action=save", json={"filename": "s.bin"})  # a control call: also a 503
                assert r.status_code == 503 and "could not be reloaded" in r.json()["error"]["message"], r.text
            finally:
                resource.prlimit(s.proc.pid, resource.RLIMIT_AS, old)
            after = c.post("/completion", json=GREEDY)
            assert after.status_code == 200 and after.json()["content"] == before
            assert not sleeping(c)
        assert "model reload failed, staying asleep" in s.output()
    finally:
        s.stop()
