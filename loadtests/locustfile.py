"""Locust load test for llama-server's HTTP API (llamajit's, or llama.cpp's own).

    locust -f loadtests/locustfile.py --headless -u 4 -r 2 -t 60s \\
        --csv out/run --html out/run.html --prompt-tokens 128 --max-tokens 64 --max-ttft-p95 2000

User classes (pick some by name after the options, else all run, equally weighted):
ChatStreamUser, ChatUser (POST /v1/chat/completions), CompletionStreamUser, CompletionUser
(POST /v1/completions), NativeStreamUser (POST /completion) and EmbeddingUser (POST
/v1/embeddings; the server needs --embeddings and a pooling other than none).

Besides the request rows, each finished request fires request_type "METRIC" rows that locust
aggregates like requests (so they land in the console tables, --csv and --html), with the
value in the response-time column: "TTFT ms <label>", "ITL ms <label>" (mean gap between
tokens), "tokens/s <label>" (generated tokens over the request's whole time) and "E2E ms
<label>"; their content size is the request's generated token count. Note that locust's
"Aggregated" row adds METRIC rows to the requests.

The run is bounded (headless without -t gets --default-run-time), the host defaults to
loopback, the API key comes from LLAMA_API_KEY (or --api-key). The exit code is non-zero on
any failed request, when no request finished, or when the p95 TTFT over all streamed users
exceeds --max-ttft-p95. /metrics is snapshotted around the run and polled during it; the
server's view is printed beside locust's at the end (and saved as <csv prefix>_server.csv).
"""

from __future__ import annotations

import csv
import logging
import os
import random
import time

import gevent
from locust import HttpUser, events, task
from locust.stats import CSV_STATS_INTERVAL_SEC
from locust.runners import WorkerRunner

from prompts import PromptMaker
from server_view import ServerView, render
from sse import Framing, read_stream
from verdict import judge

DEFAULT_HOST = "http://127.0.0.1:8080"
log = logging.getLogger("loadtests")
RUN: dict = {}  # this process's ServerView and calibrated prompt length, set at test start


@events.init_command_line_parser.add_listener
def _(parser):
    # on the parser itself, not a group: only its add_argument knows locust's is_secret
    g = parser
    g.add_argument("--api-key", default=os.environ.get("LLAMA_API_KEY", ""), is_secret=True,
                   help="Bearer key for the server (default: $LLAMA_API_KEY)")
    g.add_argument("--prompt-tokens", type=int, default=64, help="prompt length in tokens (random words)")
    g.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    g.add_argument("--stop-at-eos", action="store_true",
                   help="let generation end at EOS (default: ignore_eos, every request generates --max-tokens)")
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--think-time", type=float, default=0.0, help="max seconds a user waits between requests")
    g.add_argument("--max-ttft-p95", type=float, default=0.0,
                   help="exit non-zero when p95 TTFT (ms, all streamed users) exceeds this; 0: no check")
    g.add_argument("--metrics-interval", type=float, default=0.25, help="seconds between /metrics samples")
    g.add_argument("--default-run-time", type=int, default=60,
                   help="seconds a headless run lasts when -t/--run-time is not given")


@events.init.add_listener
def _(environment, **_kw):
    o = environment.parsed_options
    if o is None:
        return
    if o.headless and not o.run_time and not o.worker:
        # a load test that never stops is a mistake here: bound it
        o.run_time = o.default_run_time
        log.info("no --run-time: bounded to %d s (--default-run-time)", o.run_time)
    # the calls to the server happen here, before locust starts the --run-time clock, so that a
    # slow answer cannot eat the run
    host = environment.host or DEFAULT_HOST
    maker = PromptMaker(o.prompt_tokens)
    maker.calibrate(host, _headers(environment))
    RUN["words_per_token"] = maker.words_per_token
    if not o.worker:
        RUN["view"] = ServerView(host, _headers(environment), o.metrics_interval)


def _headers(environment) -> dict:
    key = environment.parsed_options.api_key if environment.parsed_options else ""
    return {"Authorization": f"Bearer {key}"} if key else {}


@events.test_start.add_listener
def _(environment, **_kw):
    if isinstance(environment.runner, WorkerRunner):
        return
    view = RUN.get("view")
    if view is None or view.t1 is not None:  # a second run from the web UI: a fresh baseline
        o = environment.parsed_options
        view = RUN["view"] = ServerView(environment.host or DEFAULT_HOST, _headers(environment), o.metrics_interval)
    view.start()


@events.test_stop.add_listener
def _(environment, **_kw):
    if "view" in RUN:
        RUN["view"].finish()


@events.quitting.add_listener
def _(environment, **_kw):
    if isinstance(environment.runner, WorkerRunner):
        return
    o = environment.parsed_options
    code, lines = judge(environment.stats, o.max_ttft_p95 if o else 0.0)
    view = RUN.get("view")
    if view is not None:
        view.finish()
        tokens, reqs = locust_counts(environment.stats)
        rows = view.rows(tokens, reqs)
        print("\nServer's view (/metrics before, during and after the run) beside locust's:")
        print(render(rows))
        if o is not None and o.csv_prefix:
            with open(f"{o.csv_prefix}_server.csv", "w", newline="") as f:
                csv.writer(f).writerows([("quantity", "locust", "server"), *rows])
    for line in lines:
        print(line)
    environment.process_exit_code = code
    if o is not None and o.csv_prefix:
        # locust rewrites <prefix>_stats.csv once a second and only closes it at exit: requests that
        # finished in the last second (those waited for by --stop-timeout) would be missing from it
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def locust_counts(stats) -> tuple[int, int]:
    """(generated tokens, finished generation requests) as locust saw them, from the E2E rows."""
    tokens = reqs = 0
    for (name, method), e in stats.entries.items():
        if method == "METRIC" and name.startswith("E2E ms"):
            tokens += e.total_content_length
            reqs += e.num_requests
    return tokens, reqs


class LlamaUser(HttpUser):
    """Shared plumbing: key, prompts, timings reported as METRIC rows."""

    abstract = True
    host = DEFAULT_HOST

    def wait_time(self):
        return random.uniform(0, self.environment.parsed_options.think_time)

    def on_start(self):
        o = self.environment.parsed_options
        self.client.headers.update(_headers(self.environment))
        self.prompts = PromptMaker(o.prompt_tokens)
        self.prompts.words_per_token = RUN.get("words_per_token", 1.0)
        self.o = o

    def metric(self, name: str, value: float | None, tokens: int = 0) -> None:
        if value is None:
            return
        self.environment.events.request.fire(request_type="METRIC", name=name, response_time=value,
                                             response_length=tokens, exception=None, context={})

    def gen_fields(self) -> dict:
        return {"max_tokens": self.o.max_tokens, "n_predict": self.o.max_tokens, "temperature": self.o.temperature,
                "ignore_eos": not self.o.stop_at_eos, "cache_prompt": False}

    def streamed(self, path: str, label: str, framing: Framing, body: dict) -> None:
        if framing is not Framing.NATIVE:
            body["stream_options"] = {"include_usage": True}
        t0 = time.perf_counter()
        with self.client.post(path, json={**body, "stream": True}, stream=True, catch_response=True,
                              name=f"{path} stream") as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return
            st = read_stream(r.iter_lines(chunk_size=None), framing, t0)
            # the row's time is the whole stream, not just the headers
            r.request_meta["response_time"] = st.e2e_ms
            r.request_meta["response_length"] = len(st.text.encode())
            if st.error or st.n_tokens == 0:
                r.failure(st.error or "no tokens generated")
                return
            r.success()
        self.metric(f"TTFT ms {label}", st.ttft_ms, st.n_tokens)
        self.metric(f"ITL ms {label}", st.itl_ms, st.n_tokens)
        self.metric(f"tokens/s {label}", st.tokens_per_s, st.n_tokens)
        self.metric(f"E2E ms {label}", st.e2e_ms, st.n_tokens)

    def unary(self, path: str, label: str, body: dict, count, generates: bool = True) -> None:
        """One non-streamed request; `count` reads its size (tokens generated, or dimensions)."""
        t0 = time.perf_counter()
        with self.client.post(path, json=body, catch_response=True, name=path) as r:
            e2e = (time.perf_counter() - t0) * 1e3
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return
            try:
                n = count(r.json())
            except (ValueError, KeyError, IndexError, TypeError) as e:
                r.failure(f"unexpected body: {e!r}")
                return
            if not n:
                r.failure("empty result")
                return
            r.success()
        if generates:
            self.metric(f"tokens/s {label}", n / (e2e / 1e3), n)
        self.metric(f"E2E ms {label}", e2e, n if generates else 0)

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.prompts.make()}]


class ChatStreamUser(LlamaUser):
    @task
    def chat_stream(self):
        self.streamed("/v1/chat/completions", "chat stream", Framing.CHAT,
                      {"messages": self.messages(), **self.gen_fields()})


class ChatUser(LlamaUser):
    @task
    def chat(self):
        self.unary("/v1/chat/completions", "chat", {"messages": self.messages(), **self.gen_fields()},
                   lambda j: j["usage"]["completion_tokens"])


class CompletionStreamUser(LlamaUser):
    @task
    def completion_stream(self):
        self.streamed("/v1/completions", "completions stream", Framing.TEXT,
                      {"prompt": self.prompts.make(), **self.gen_fields()})


class CompletionUser(LlamaUser):
    @task
    def completion(self):
        self.unary("/v1/completions", "completions", {"prompt": self.prompts.make(), **self.gen_fields()},
                   lambda j: j["usage"]["completion_tokens"])


class NativeStreamUser(LlamaUser):
    @task
    def native_stream(self):
        self.streamed("/completion", "native stream", Framing.NATIVE,
                      {"prompt": self.prompts.make(), **self.gen_fields()})


class EmbeddingUser(LlamaUser):
    @task
    def embeddings(self):
        self.unary("/v1/embeddings", "embeddings", {"input": self.prompts.make()},
                   lambda j: len(j["data"][0]["embedding"]), generates=False)
