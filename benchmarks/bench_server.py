"""Server benchmark: llamajit's llama-server against llama.cpp's own, same flags, same run.

For 1, 4 and 8 concurrent streams (-np 8): aggregate generated tokens/s and p50/p95 time to
first token, streaming /completion with greedy sampling and a fixed length. Then the server's
overhead per token at one stream against the engine alone (the same model, in-process).

    python benchmarks/bench_server.py [--model PATH] [--tokens 64] [--peer PATH]

The peer is built by ../shared/tools/build-llama-server (default path below); without it,
only llamajit is measured and the ratios are not printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.serving import start_server  # noqa: E402
from tests.server_proc import free_port  # noqa: E402

PEER = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin" / "llama-server"
PROMPTS = ["The history of the Roman empire", "A recipe for bread starts with", "In quantum mechanics, the",
           "The best way to learn a language", "Once upon a time in a small village", "def quicksort(xs):",
           "The weather tomorrow will be", "Dear hiring manager, I am writing"]


async def one(client: httpx.AsyncClient, prompt: str, n: int) -> tuple[float, int, float]:
    """(time to first token, tokens, seconds) of one streamed greedy completion."""
    t0 = time.perf_counter()
    ttft, count = None, 0
    body = {"prompt": prompt, "n_predict": n, "temperature": 0, "ignore_eos": True, "stream": True,
            "cache_prompt": False}
    async with client.stream("POST", "/completion", json=body) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            ev = json.loads(line[6:])
            if ev.get("stop"):
                count = ev.get("tokens_predicted", count)
                break
            if ttft is None:
                ttft = time.perf_counter() - t0
    return ttft or 0.0, count, time.perf_counter() - t0


async def load(url: str, conc: int, n: int, rounds: int) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        await one(c, "warm up", 4)
        ttfts, total, wall, itl, per_tok = [], 0, 0.0, [], []
        for r in range(rounds):
            t0 = time.perf_counter()
            res = await asyncio.gather(*(one(c, PROMPTS[(i + r) % len(PROMPTS)], n) for i in range(conc)))
            wall += time.perf_counter() - t0
            ttfts += [x[0] for x in res]
            total += sum(x[1] for x in res)
            itl += [(x[2] - x[0]) / max(1, x[1] - 1) for x in res]
            per_tok += [x[2] / max(1, x[1]) for x in res]
    ttfts.sort()
    return {"tok_s": total / wall, "ttft_p50": statistics.median(ttfts) * 1e3,
            "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))] * 1e3,
            "itl_ms": statistics.median(itl) * 1e3, "e2e_ms_per_token": min(per_tok) * 1e3}


def engine_ms_per_token(model: str, n: int) -> float:
    """Time per token of the engine alone (no HTTP, no scheduler), one sequence, prompt included:
    the best of three runs (the first also loads the kernels from Numba's cache)."""
    code = (
        "import time,sys; sys.path.insert(0,'.')\n"
        "from service.model.model import Model; from service.model.generate import greedy\n"
        f"m=Model({model!r}, n_ctx=512, n_seq=1, max_batch=512)\n"
        "p=m.tokenizer.tokenize('The history of the Roman empire')\n"
        "best=1e9\n"
        f"for r in range(3):\n t=time.perf_counter(); k=sum(1 for _ in greedy(m,[p],{n})); "
        "best=min(best,(time.perf_counter()-t)/k*1e3)\n"
        "print(best)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--peer", default=str(PEER))
    a = ap.parse_args()
    flags = ["-m", a.model, "-np", "8", "-c", "4096", "-t", str(os.cpu_count())]
    servers = {"llamajit": [sys.executable, "-m", "service.cli", *flags]}
    if Path(a.peer).exists():
        servers["llama.cpp"] = [a.peer, *flags]
    results: dict[str, dict[int, dict]] = {}
    for name, cmd in servers.items():
        port = free_port()
        p = start_server([*cmd, "--port", str(port)], port, timeout=300)
        try:
            results[name] = {c: asyncio.run(load(f"http://127.0.0.1:{port}", c, a.tokens, a.rounds)) for c in (1, 4, 8)}
        finally:
            p.terminate()
            p.wait(30)
    print(f"model {Path(a.model).name}, {a.tokens} tokens per stream, -np 8, {os.cpu_count()} cores")
    print(f"{'streams':>7} | {'server':>9} | {'tok/s':>7} | {'TTFT p50':>9} | {'TTFT p95':>9} | ratio")
    for c in (1, 4, 8):
        for name in results:
            r = results[name][c]
            ratio = ""
            if name == "llamajit" and "llama.cpp" in results:
                ratio = f"{r['tok_s'] / results['llama.cpp'][c]['tok_s']:.2f}x"
            print(f"{c:>7} | {name:>9} | {r['tok_s']:7.1f} | {r['ttft_p50']:7.1f}ms | {r['ttft_p95']:7.1f}ms | {ratio}")
    eng = engine_ms_per_token(a.model, a.tokens)
    srv = results["llamajit"][1]["e2e_ms_per_token"]
    print(f"one stream, prompt included, best run: server {srv:.2f} ms/token, engine alone {eng:.2f} ms/token: "
          f"overhead {100 * (srv / eng - 1):+.1f}%")


if __name__ == "__main__":
    main()
