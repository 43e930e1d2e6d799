"""Measurements of one server over HTTP: time to ready, prefill and decode rates, TTFT, peak RSS.

Every server is driven the same way, through the OpenAI text completion route
(POST /v1/completions, which llamajit, llama-server and llama_cpp.server all have), greedy,
with random-word prompts that share no prefix (so no server can reuse an earlier prompt's
KV cache). Streams are read on threads with loadtests.sse, which stamps each event.
"""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks.perf_env import ROOT, ServerSpec
from loadtests.prompts import WORDS
from loadtests.sse import Framing, read_stream
from tests.server_proc import free_port


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Running:
    """One server process: started, timed to ready and to its first reply, then measured."""

    def __init__(self, spec: ServerSpec, env: dict, log: Path):
        self.spec, self.port = spec, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.t0 = time.monotonic()
        self._log = open(log, "w")
        self.proc = subprocess.Popen([*spec.cmd, spec.port_flag, str(self.port)], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=900)

    def wait_ready(self, timeout: float) -> float:
        """Seconds from launch until the ready route answers 200."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited {self.proc.returncode} (log: {self._log.name})")
            try:
                if self.client.get(self.spec.ready_path, timeout=2).status_code == 200:
                    return time.monotonic() - self.t0
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.spec.name} not ready in {timeout:.0f} s")

    def first_reply(self, n: int = 4) -> float:
        """Seconds from launch until a first short completion has come back (kernels compiled on first use)."""
        self.complete("Hello, my name is", n)
        return time.monotonic() - self.t0

    def complete(self, prompt: str, n: int) -> dict:
        r = self.client.post("/v1/completions", json={"prompt": prompt, "max_tokens": n, "temperature": 0,
                                                      **self.spec.extra_body})
        r.raise_for_status()
        return r.json()

    def stream(self, prompt: str, n: int) -> tuple[float, int, float]:
        """(TTFT s, generated tokens, end-to-end s) of one streamed completion."""
        body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True, **self.spec.extra_body}
        t0 = time.perf_counter()
        with self.client.stream("POST", "/v1/completions", json=body) as r:
            r.raise_for_status()
            st = read_stream(r.iter_lines(), Framing.TEXT, t0)
        if st.error or st.t_first is None:
            raise RuntimeError(f"{self.spec.name}: stream failed: {st.error}")
        return st.ttft_ms / 1e3, st.n_tokens, st.e2e_ms / 1e3

    def peak_rss_mib(self) -> float:
        """Peak resident set (VmHWM) of the server and its children."""
        total = 0
        for pid in _tree(self.proc.pid):
            try:
                for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if ln.startswith("VmHWM:"):
                        total += int(ln.split()[1])
            except OSError:
                pass
        return total / 1024

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def prefill(srv: Running, n_words: int, reps: int, rng: random.Random) -> dict:
    """Prompt tokens per second: a long prompt with one generated token (so the time is nearly all
    prefill), the median of `reps`; with the prompt's length in tokens as the server counted it."""
    rates, n = [], 0
    for _ in range(reps):
        t0 = time.perf_counter()
        body = srv.complete(words(rng, n_words), 1)
        n = body["usage"]["prompt_tokens"]
        rates.append(n / (time.perf_counter() - t0))
    return {"tok_s": statistics.median(rates), "prompt_tokens": n}


def warm_up(srv: Running, slots: int, rng: random.Random) -> None:
    """A single and a full-width burst, so that no kernel compiles during the timed rounds."""
    srv.stream(words(rng, 8), 8)
    with ThreadPoolExecutor(slots) as ex:
        list(ex.map(lambda p: srv.stream(p, 8), [words(rng, 8) for _ in range(slots)]))


def concurrent(srv: Running, streams: int, n: int, rounds: int, rng: random.Random, prompt_words: int = 16) -> dict:
    """`rounds` times `streams` simultaneous streams of `n` tokens: aggregate tokens/s and TTFTs."""
    ttfts, total, wall = [], 0, 0.0
    with ThreadPoolExecutor(streams) as ex:
        for _ in range(rounds):
            prompts = [words(rng, prompt_words) for _ in range(streams)]
            t0 = time.perf_counter()
            res = list(ex.map(lambda p: srv.stream(p, n), prompts))
            wall += time.perf_counter() - t0
            ttfts += [r[0] * 1e3 for r in res]
            total += sum(r[1] for r in res)
    ttfts.sort()
    return {"streams": streams, "tok_s": total / wall, "tokens": total, "ttft_ms": ttfts,
            "ttft_p50": statistics.median(ttfts), "ttft_p95": percentile(ttfts, 0.95)}


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `xs`."""
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]
