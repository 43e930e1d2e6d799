"""The `llamajit:` metrics and --max-queue through a real server with the real model: the latency
histograms count and sum the requests made, the queue and KV gauges follow a running and a waiting
request, a request beyond the slot and the queue gets 503 with Retry-After (counted), the admitted
ones lose nothing, and a waiting client that leaves gives its place back."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.served import module_server

server = module_server("server", "-c", "512", "-np", "1", "--max-queue", "1", "--metrics")
HISTS = ("time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds",
         "request_queue_time_seconds")


def scrape(url: str) -> dict[str, list]:
    """{family name: samples}, parsed by prometheus-client's own parser (the format is checked too)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return {f.name: f.samples for f in text_string_to_metric_families(text) if f.name.startswith("llamajit:")}


def value(fams: dict, sample: str) -> float:
    fam = sample.removesuffix("_total")
    return next(s.value for s in fams[fam] if s.name == sample)


def hist(fams: dict, name: str) -> tuple[float, float, list[tuple[float, float]]]:
    """(count, sum, [(le, cumulative count)])."""
    samples = fams["llamajit:" + name]
    count = next(s.value for s in samples if s.name.endswith("_count"))
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]
    return count, total, buckets


def wait_for(cond, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def test_the_histograms_count_and_sum_the_requests_made(server):
    before = scrape(server.url)
    walls, timings = [], []
    with server.client() as c:
        for prompt, n in (("The capital of France is", 5), ("Once upon a time", 5), ("1, 2, 3,", 6), ("Hi", 1)):
            t0 = time.perf_counter()
            r = c.post("/completion", json={"prompt": prompt, "n_predict": n, "ignore_eos": True,
                                            "cache_prompt": False})
            walls.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            timings.append(r.json()["timings"])
    after = scrape(server.url)
    d = {h: [a - b for a, b in zip(hist(after, h)[:2], hist(before, h)[:2])] for h in HISTS}
    assert d["e2e_request_latency_seconds"][0] == 4 and d["request_queue_time_seconds"][0] == 4
    assert d["time_to_first_token_seconds"][0] == 4
    assert d["time_per_output_token_seconds"][0] == 3  # the one-token request has no interval
    # each observation lies between what the server reported and what the client waited
    prompt_s = sum(t["prompt_ms"] for t in timings) / 1e3
    busy_s = prompt_s + sum(t["predicted_ms"] for t in timings) / 1e3
    assert busy_s <= d["e2e_request_latency_seconds"][1] <= sum(walls)
    assert prompt_s <= d["time_to_first_token_seconds"][1] <= sum(walls)
    assert d["request_queue_time_seconds"][1] <= sum(walls) - busy_s
    tpot_bound = sum(t["predicted_ms"] / (t["predicted_n"] - 1) for t in timings if t["predicted_n"] > 1) / 1e3
    assert 0 < d["time_per_output_token_seconds"][1] <= tpot_bound + 1e-6
    for h in HISTS:
        count, _, buckets = hist(after, h)
        assert [n for _, n in buckets] == sorted(n for _, n in buckets) and buckets[-1] == (float("inf"), count)


def _stream(url: str, body: dict, started: threading.Event, out: dict) -> None:
    """A streaming /completion whose tokens are counted into out["n"]; `started` is set at the first."""
    out["n"] = 0
    with httpx.stream("POST", url + "/completion", json={**body, "stream": True}, timeout=120) as r:
        out["status"] = r.status_code
        for line in r.iter_lines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                out["n"] += len(ev.get("tokens", [])) or (1 if ev.get("content") else 0)
                out["last"] = ev
                started.set()


def test_a_request_past_the_slot_and_the_queue_gets_503_with_retry_after_and_the_others_finish(server):
    url = server.url
    rejected = value(scrape(url), "llamajit:requests_rejected_total")
    a_started, a = threading.Event(), {}
    ta = threading.Thread(target=_stream, args=(url, {"prompt": "Once upon a time", "n_predict": 300,
                                                      "ignore_eos": True}, a_started, a))
    ta.start()
    assert a_started.wait(60)
    fams = scrape(url)
    assert value(fams, "llamajit:num_requests_running") == 1 and value(fams, "llamajit:kv_cache_usage_perc") > 0
    b = {}
    tb = threading.Thread(target=lambda: b.update(r=httpx.post(url + "/completion", timeout=120, json={
        "prompt": "The capital of France is", "n_predict": 8, "ignore_eos": True})))
    tb.start()
    wait_for(lambda: value(scrape(url), "llamajit:num_requests_waiting") == 1, "the second request never queued")
    c = httpx.post(url + "/completion", json={"prompt": "Hi", "n_predict": 4}, timeout=60)
    assert c.status_code == 503 and c.headers["Retry-After"] == "1"
    err = c.json()["error"]
    assert err["code"] == 503 and err["type"] == "unavailable_error" and "busy" in err["message"]
    ta.join(120)
    tb.join(120)
    assert a["status"] == 200 and a["last"]["stop"] is True, a  # nothing lost
    assert a["n"] == a["last"]["tokens_predicted"] == 300, {k: v for k, v in a["last"].items() if k != "content"}
    assert b["r"].status_code == 200 and b["r"].json()["tokens_predicted"] == 8
    fams = scrape(url)
    assert value(fams, "llamajit:requests_rejected_total") == rejected + 1
    assert value(fams, "llamajit:num_requests_waiting") == 0 and value(fams, "llamajit:num_requests_running") == 0


def test_a_waiting_client_that_leaves_gives_its_place_back(server):
    url = server.url
    with httpx.Client(base_url=url, timeout=120) as c:
        with c.stream("POST", "/completion", json={"prompt": "Once upon a time", "n_predict": 400,
                                                   "ignore_eos": True, "stream": True}) as running:
            lines = running.iter_lines()  # held: a dropped line iterator closes the connection
            next(line for line in lines if line.startswith("data: "))
            # a raw socket: a stream's headers come with its first event, which a queued one has not had
            body = json.dumps({"prompt": "Hi", "n_predict": 4, "stream": True}).encode()
            host, port = url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                wait_for(lambda: value(scrape(url), "llamajit:num_requests_waiting") == 1, "never queued")
            # the queued client is gone: its place is free again for the next one
            wait_for(lambda: value(scrape(url), "llamajit:num_requests_waiting") == 0, "the place was not given back")
            rejected = value(scrape(url), "llamajit:requests_rejected_total")
            got = {}
            t = threading.Thread(target=lambda: got.update(r=httpx.post(url + "/completion", timeout=120, json={
                "prompt": "Hi", "n_predict": 2})))
            t.start()
            wait_for(lambda: value(scrape(url), "llamajit:num_requests_waiting") == 1, "the next one did not queue")
        t.join(120)  # leaving the running stream cancels it, so the queued request gets the slot
    assert got["r"].status_code == 200
    assert value(scrape(url), "llamajit:requests_rejected_total") == rejected


@pytest.mark.parametrize("flag", ["--max-queue -1", "--max-queue x"])
def test_a_bad_max_queue_is_refused_at_start(flag):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "service.cli", "-m", "x.gguf", *flag.split()], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "--max-queue" in (r.stdout + r.stderr)
