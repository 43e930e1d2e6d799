"""A soak: concurrent users drive a real server across its routes for a while, with mid-stream
disconnects and malformed requests mixed in, and the server's memory is watched.

    python -m tests.soak --seconds 3600      # make soak: prints the figures, exits 1 on a failure

tests/test_soak.py runs it for CI's budget and asserts on the same figures. Each user picks a
route at random (seeded, so a run can be repeated) and checks the answer's shape; a valid request
that does not get its answer is a failure. RSS (VmRSS of the server process) is read once the
warm-up is over (every route served, every kernel compiled, the prompt cache at its ceiling) and
again at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

USERS = 8
RSS_EVERY_S = 30
N_PREDICT = 8
# -np 4 -c 2048: four slots of 512. --cache-ram 64: the prompt cache reaches its ceiling within
# the warm-up, so RSS growth after it is not the cache filling up as designed (default: 8 GiB).
SERVER_ARGS = ("-np", "4", "-c", "2048", "--metrics", "--embeddings", "--pooling", "mean", "--cache-ram", "64")
PROMPTS = ["Once upon a time", "The capital of France is", "List three colours:", "def fibonacci(n):",
           "Write a haiku about the sea.", "Why is the sky blue?", "1, 2, 3, 4,", "Translate 'hello' to Spanish."]


class Invalid(Exception):
    """A valid request whose answer was wrong (status or shape)."""


@dataclass
class Figures:
    requests: Counter = field(default_factory=Counter)  # route -> answered as expected
    failures: Counter = field(default_factory=Counter)  # route -> not
    examples: list = field(default_factory=list)  # the first few failures, for the report
    latency: dict = field(default_factory=lambda: defaultdict(list))  # route -> seconds
    rss_kib: dict = field(default_factory=dict)  # "warm", "end" -> VmRSS in KiB
    rss_trace: list = field(default_factory=list)  # (seconds since the warm-up, KiB), every RSS_EVERY_S
    idle_at_end: bool = False
    seconds: float = 0.0

    def fail(self, route: str, why: str) -> None:
        self.failures[route] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{route}: {why}"[:300])


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise Invalid(what)


def _json(r: httpx.Response, status: int = 200):
    _expect(r.status_code == status, f"status {r.status_code}: {r.text[:200]}")
    return r.json()


def _sse_data(text: str) -> list:
    return [b[6:] for b in text.split("\n\n") if b.startswith("data: ")]


# -- valid requests: each returns normally or raises Invalid -------------------------------------

async def completion(c: httpx.AsyncClient, rnd: random.Random) -> None:
    body = _json(await c.post("/completion", json={"prompt": rnd.choice(PROMPTS), "n_predict": N_PREDICT}))
    _expect(isinstance(body["content"], str) and body["stop"] is True, str(body)[:200])


async def completion_stream(c, rnd) -> None:
    r = await c.post("/completion", json={"prompt": rnd.choice(PROMPTS), "n_predict": N_PREDICT, "stream": True})
    _expect(r.status_code == 200, f"status {r.status_code}")
    events = [json.loads(d) for d in _sse_data(r.text)]
    _expect(events and events[-1].get("stop") is True, f"no final event: {r.text[-200:]}")


async def chat_stream(c, rnd) -> None:
    r = await c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": rnd.choice(PROMPTS)}],
                                                   "max_tokens": N_PREDICT, "stream": True})
    _expect(r.status_code == 200, f"status {r.status_code}")
    data = _sse_data(r.text)
    _expect(data and data[-1] == "[DONE]", f"no [DONE]: {r.text[-200:]}")
    reason = json.loads(data[-2])["choices"][0]["finish_reason"]
    _expect(reason in ("stop", "length"), f"finish_reason {reason}")


async def chat(c, rnd) -> None:
    body = _json(await c.post("/v1/chat/completions", json={
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": rnd.choice(PROMPTS)}],
        "max_tokens": N_PREDICT}))
    _expect(body["choices"][0]["message"]["role"] == "assistant", str(body)[:200])


async def v1_completions(c, rnd) -> None:
    body = _json(await c.post("/v1/completions", json={"prompt": rnd.choice(PROMPTS), "max_tokens": N_PREDICT}))
    _expect(isinstance(body["choices"][0]["text"], str), str(body)[:200])


async def tokenize(c, rnd) -> None:
    text = rnd.choice(PROMPTS)
    toks = _json(await c.post("/tokenize", json={"content": text}))["tokens"]
    _expect(toks and all(isinstance(t, int) for t in toks), str(toks)[:200])
    back = _json(await c.post("/detokenize", json={"tokens": toks}))["content"]
    _expect(back.strip() == text, f"round trip: {text!r} -> {back!r}")


async def embeddings(c, rnd) -> None:
    body = _json(await c.post("/v1/embeddings", json={"input": rnd.choice(PROMPTS)}))
    _expect(len(body["data"][0]["embedding"]) > 0, str(body)[:200])


async def messages(c, rnd) -> None:
    body = _json(await c.post("/v1/messages", json={"model": "x", "max_tokens": N_PREDICT,
                                                    "messages": [{"role": "user", "content": rnd.choice(PROMPTS)}]}))
    _expect(body["type"] == "message" and body["stop_reason"] in ("end_turn", "max_tokens"), str(body)[:200])


async def responses(c, rnd) -> None:
    body = _json(await c.post("/v1/responses", json={"input": rnd.choice(PROMPTS), "max_output_tokens": N_PREDICT}))
    _expect(body["object"] == "response" and body["status"] in ("completed", "incomplete"), str(body)[:200])


async def health(c, rnd) -> None:
    _expect(_json(await c.get("/health")) == {"status": "ok"}, "health")


async def metrics(c, rnd) -> None:
    r = await c.get("/metrics")
    _expect(r.status_code == 200 and "llamacpp:requests_processing" in r.text, f"status {r.status_code}")


async def props(c, rnd) -> None:
    _expect("default_generation_settings" in _json(await c.get("/props")), "props")


async def slots(c, rnd) -> None:
    _expect(len(_json(await c.get("/slots"))) == 4, "slots")  # -np 4


async def disconnect(c, rnd) -> None:
    """A stream the client drops after its first token (the server must cancel it and free the slot)."""
    body = {"prompt": rnd.choice(PROMPTS), "n_predict": 400, "ignore_eos": True, "stream": True}
    async with c.stream("POST", "/completion", json=body) as r:
        _expect(r.status_code == 200, f"status {r.status_code}")
        async for line in r.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("content"):
                return  # leaving the block closes the connection mid-stream
    raise Invalid("the stream ended before a token came")


# -- malformed requests: each must get a 4xx in llama-server's error shape -----------------------
# ({"error": {code, message, type}}; /v1/messages answers in Anthropic's: {"type": "error",
# "error": {type, message}})

MALFORMED = {
    "bad JSON": ("/completion", b'{"prompt": "hi", "n_predict": '),
    "wrong type": ("/completion", b'{"prompt": "hi", "n_predict": "many"}'),
    "unknown role": ("/v1/chat/completions", b'{"messages": [{"role": "wizard", "content": "hi"}]}'),
    "not an object": ("/v1/completions", b'[1, 2, 3]'),
    "anthropic, wrong type": ("/v1/messages", b'{"max_tokens": 8, "messages": "hi"}'),
}


async def malformed(c, rnd) -> None:
    kind = rnd.choice(sorted(MALFORMED))
    path, raw = MALFORMED[kind]
    r = await c.post(path, content=raw, headers={"Content-Type": "application/json"})
    _expect(400 <= r.status_code < 500, f"{kind}: status {r.status_code}")
    body = r.json()
    err = body.get("error", {})
    own = body.get("type") == "error" if path == "/v1/messages" else err.get("code") == r.status_code
    _expect(own and isinstance(err.get("message"), str) and isinstance(err.get("type"), str), f"{kind}: {r.text[:200]}")


# route name -> (scenario, weight); the weights put most load on generation, a little everywhere else
SCENARIOS = {
    "/completion": (completion, 3), "/completion stream": (completion_stream, 3),
    "/v1/chat/completions": (chat, 2), "/v1/chat/completions stream": (chat_stream, 3),
    "/v1/completions": (v1_completions, 2), "/tokenize+/detokenize": (tokenize, 2),
    "/v1/embeddings": (embeddings, 1), "/v1/messages": (messages, 2), "/v1/responses": (responses, 2),
    "/health": (health, 1), "/metrics": (metrics, 1), "/props": (props, 1), "/slots": (slots, 1),
    "disconnect mid-stream": (disconnect, 1), "malformed": (malformed, 1),
}


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


async def _user(c: httpx.AsyncClient, seed: int, until: float, fig: Figures) -> None:
    rnd = random.Random(seed)
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][1] for n in names]
    while time.monotonic() < until:
        route = rnd.choices(names, weights)[0]
        t0 = time.monotonic()
        try:
            await SCENARIOS[route][0](c, rnd)
        except (Invalid, httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as e:
            fig.fail(route, f"{type(e).__name__}: {e}")
            continue
        fig.requests[route] += 1
        fig.latency[route].append(time.monotonic() - t0)


async def _trace_rss(pid: int, fig: Figures) -> None:
    """RSS over the run, to tell a plateau (allocator arenas, caches at their ceiling) from a climb."""
    t0 = time.monotonic()
    while True:
        await asyncio.sleep(RSS_EVERY_S)
        fig.rss_trace.append((time.monotonic() - t0, vm_rss_kib(pid)))


async def _idle(c: httpx.AsyncClient, timeout: float = 3.0) -> bool:
    """Every slot idle and no request processing (a cancelled stream frees its slot at the engine's
    next step: a short wait is allowed for that, not for work still going on)."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [s["id"] for s in (await c.get("/slots")).json() if s["is_processing"]]
        m = (await c.get("/metrics")).text
        processing = next(float(ln.split()[-1]) for ln in m.splitlines() if ln.startswith("llamacpp:requests_processing"))
        if not busy and processing == 0:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


async def soak(url: str, pid: int, seconds: float, warmup: float, users: int = USERS, seed: int = 0) -> Figures:
    fig = Figures()
    limits = httpx.Limits(max_connections=users * 2, max_keepalive_connections=users * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        t0 = time.monotonic()
        until = t0 + warmup + seconds
        tasks = [asyncio.create_task(_user(c, seed * 1000 + i, until, fig)) for i in range(users)]
        await asyncio.sleep(warmup)
        fig.rss_kib["warm"] = vm_rss_kib(pid)
        tracer = asyncio.create_task(_trace_rss(pid, fig))
        await asyncio.gather(*tasks)
        tracer.cancel()
        fig.seconds = time.monotonic() - t0
        fig.idle_at_end = await _idle(c)
        fig.rss_kib["end"] = vm_rss_kib(pid)
    return fig


def _pct(xs: list, q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def report(fig: Figures) -> str:
    lines = [f"{'route':30} {'ok':>7} {'failed':>6} {'p50 ms':>8} {'p95 ms':>8}"]
    for route in SCENARIOS:
        lat = fig.latency.get(route, [])
        lines.append(f"{route:30} {fig.requests[route]:7d} {fig.failures[route]:6d} "
                     f"{_pct(lat, 0.5) * 1e3:8.1f} {_pct(lat, 0.95) * 1e3:8.1f}")
    total = sum(fig.requests.values())
    warm, end = fig.rss_kib.get("warm", 0), fig.rss_kib.get("end", 0)
    lines += [f"total {total} answered as expected in {fig.seconds:.0f} s ({total / max(fig.seconds, 1e-9):.1f}/s), "
              f"{sum(fig.failures.values())} failed",
              f"RSS after warm-up {warm / 1024:.1f} MiB, at the end {end / 1024:.1f} MiB "
              f"(growth {(end - warm) / 1024:+.1f} MiB)",
              f"every slot idle at the end: {fig.idle_at_end}"]
    if fig.rss_trace:
        lines.append("RSS trace (s after warm-up: MiB): " +
                     ", ".join(f"{t:.0f}: {k / 1024:.1f}" for t, k in fig.rss_trace))
    lines += [f"  failure: {e}" for e in fig.examples]
    return "\n".join(lines)


def main() -> int:
    from tests.server_proc import ServerProcess

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3600, help="load after the warm-up")
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--users", type=int, default=USERS)
    a = ap.parse_args()
    s = ServerProcess(*SERVER_ARGS).wait_ready()
    try:
        fig = asyncio.run(soak(s.url, s.proc.pid, a.seconds, a.warmup, a.users))
    finally:
        s.stop()
    print(report(fig))
    return 0 if not fig.failures and fig.idle_at_end else 1


if __name__ == "__main__":
    sys.exit(main())
