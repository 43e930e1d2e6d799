"""What /metrics and /slots report, on a real server, as llama-server reports it: counters and
gauges under their llama-server names and types, the generation rate over n - 1 steps, prompt
tokens counted apart from cached ones (embedding prompts included), the start-time header, and
slots that show their last task once idle."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.served import module_server

PROMPT = "the quick brown fox jumps over the lazy dog"

server = module_server("server", "-c", "512", "-np", "2", "--metrics", "--embeddings", "--pooling", "last")


def metrics(c: httpx.Client) -> dict[str, tuple[str, float]]:
    text = c.get("/metrics").text
    types = dict(line.split(" ")[2:4] for line in text.splitlines() if line.startswith("# TYPE llamacpp:"))
    return {name: (types[name], float(v)) for name, v in
            (line.split(" ") for line in text.splitlines() if line.startswith("llamacpp:"))}


def run(c: httpx.Client, **body) -> dict:
    return c.post("/completion", json={"prompt": PROMPT, "id_slot": 0, **body}).json()


def test_slots_show_nothing_before_a_task_and_the_last_one_after(server):
    with server.client() as c:
        fresh = c.get("/slots").json()
        assert fresh == [{"id": i, "n_ctx": 256, "speculative": False, "is_processing": False} for i in (0, 1)]
        done = threading.Event()

        def stream():
            with c.stream("POST", "/completion", json={"prompt": PROMPT, "id_slot": 0, "n_predict": 200,
                                                       "ignore_eos": True, "stream": True}) as r:
                for _ in r.iter_lines():
                    pass
            done.set()

        threading.Thread(target=stream, daemon=True).start()
        busy = None
        while not done.is_set():
            s0 = httpx.get(server.url + "/slots").json()[0]
            if s0["is_processing"] and s0.get("next_token", [{}])[0].get("n_decoded", 0) > 0:
                busy = s0
                break
            time.sleep(0.02)
        assert busy is not None
        t = busy["next_token"][0]
        assert t["has_next_token"] and t["n_remain"] == 200 - t["n_decoded"] and busy["params"]["n_predict"] == 200
        done.wait(60)
        idle = c.get("/slots").json()
        assert idle[0]["is_processing"] is False and idle[0]["params"]["n_predict"] == 200
        assert idle[0]["next_token"] == [{"has_next_token": False, "has_new_line": False, "n_remain": -1,
                                          "n_decoded": 0}]  # the finished task's budget does not leak
        assert "params" not in idle[1] and "id_task" not in idle[1]


def test_the_start_header_and_one_content_type(server):
    with server.client() as c:
        r = c.get("/metrics")
    assert (b"Process-Start-Time-Unix", str(int(r.headers["process-start-time-unix"])).encode()) in r.headers.raw
    assert time.time() - 600 < int(r.headers["process-start-time-unix"]) <= time.time()
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_counters_are_llama_servers(server):
    with server.client() as c:
        before = metrics(c)
        # ignore_eos: the default sampler is not greedy, so an end-of-generation token could come early
        runs = [run(c, n_predict=n, ignore_eos=True) for n in (1, 4, 16)]
        after = metrics(c)
    for name in ("prompt_tokens_total", "prompt_tokens_cached_total", "tokens_predicted_total", "n_tokens_max",
                 "n_decode_total", "spec_decode_num_drafts_total"):
        assert after["llamacpp:" + name][0] == "counter", name
    for name in ("prompt_tokens_seconds", "predicted_tokens_seconds", "requests_processing", "requests_deferred",
                 "n_busy_slots_per_decode"):
        assert after["llamacpp:" + name][0] == "gauge", name

    def grew(name):
        return after["llamacpp:" + name][1] - before["llamacpp:" + name][1]

    assert runs[1]["timings"]["cache_n"] > 0  # the same prompt on the same slot: read from the cache
    assert grew("prompt_tokens_total") == sum(r["timings"]["prompt_n"] for r in runs)
    assert grew("prompt_tokens_cached_total") == sum(r["timings"]["cache_n"] for r in runs)
    assert [r["timings"]["predicted_n"] for r in runs] == [1, 4, 16]
    assert grew("tokens_predicted_total") == 21 and after["llamacpp:requests_processing"][1] == 0


def test_the_generation_rate_leaves_out_the_first_token(server):
    with server.client() as c:
        one = run(c, n_predict=1)["timings"]
        many = run(c, n_predict=16, ignore_eos=True)["timings"]
        c.get("/metrics")
        run(c, n_predict=8, ignore_eos=True)
        m = metrics(c)
    assert one["predicted_n"] == 1 and one["predicted_per_second"] == 0 and one["predicted_per_token_ms"] == 0
    assert many["predicted_per_second"] == pytest.approx(1e3 / many["predicted_ms"] * 15)
    assert many["predicted_per_token_ms"] == pytest.approx(many["predicted_ms"] / 15)
    assert m["llamacpp:predicted_tokens_seconds"][1] > 0
    with server.client() as c:
        assert metrics(c)["llamacpp:predicted_tokens_seconds"][1] == 0  # the scrape emptied the bucket


def test_embedding_prompts_are_counted(server):
    with server.client() as c:
        before = metrics(c)
        r = c.post("/v1/embeddings", json={"input": ["hello world", "goodbye world"]})
        assert r.status_code == 200
        after = metrics(c)
    n = r.json()["usage"]["prompt_tokens"]
    assert after["llamacpp:prompt_tokens_total"][1] - before["llamacpp:prompt_tokens_total"][1] == n > 0
    assert after["llamacpp:tokens_predicted_total"][1] == before["llamacpp:tokens_predicted_total"][1]
