"""Embedding throughput on all-MiniLM-L6-v2 (`bert`): prompt tokens per second through
/v1/embeddings, llamajit and llama.cpp's llama-server on the same GGUF (`make models` converts
it), in the same run.

Both servers start with the same threads (llamajit's BLAS too, through OPENBLAS_NUM_THREADS) and
one slot; each round sends every sentence of the
set (64 sentences of 8 to 60 tokens) in requests of BATCH inputs, one request at a time, and the
figure is all prompt tokens (the servers' `usage`) over the wall time. The servers take turns,
round by round, so that a machine busy with other work slows both alike; the median round counts.

    python benchmarks/bench_embeddings.py [--rounds 5] [--batch 8] [--threads 2] [--peer PATH]

Measured on the 2-core development machine (Dec 2026), shared with other work, median of 5 rounds:
    -t 1   llamajit 1062 tokens/s   llama-server 898    1.18x
    -t 2   llamajit  169 tokens/s   llama-server 184    0.92x  (both starved: the other work took the cores;
                                                               llama-server's rounds ranged 142 to 1834)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.serving import start_server  # noqa: E402
from tests.server_proc import free_port  # noqa: E402

PEER = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin" / "llama-server"
OURS = ROOT / ".venv" / "bin" / "llama-server"
MODEL = ROOT / "models" / "all-MiniLM-L6-v2.F16.gguf"

_WORDS = ("the model encodes every sentence into one vector so that similar meanings lie close together while "
          "unrelated texts point elsewhere in the space of embeddings used for search ranking and clustering").split()


def sentences(n: int = 64) -> list[str]:
    """n deterministic sentences of 6 to 55 words."""
    return [" ".join(_WORDS[(i * 7 + j) % len(_WORDS)] for j in range(6 + (i * 13) % 50)) + "." for i in range(n)]


def one_round(url: str, texts: list[str], batch: int) -> tuple[int, float]:
    """(prompt tokens, seconds) of embedding every text, `batch` inputs per request."""
    n, t0 = 0, time.perf_counter()
    with httpx.Client(timeout=600) as c:
        for i in range(0, len(texts), batch):
            r = c.post(url + "/v1/embeddings", json={"input": texts[i : i + batch]})
            r.raise_for_status()
            n += r.json()["usage"]["prompt_tokens"]
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", type=Path, default=PEER, help="llama.cpp's llama-server binary")
    a = ap.parse_args()
    if not MODEL.exists():
        sys.exit(f"{MODEL} missing: make models")
    texts = sentences()
    # llamajit's encoder multiplies through NumPy's BLAS, whose threads -t does not set: the same count
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
    common = ["-m", str(MODEL), "--embedding", "-t", str(a.threads), "-np", "1", "-c", "512", "-ngl", "0"]
    servers = {}
    try:
        for name, exe in (("llamajit", OURS), ("llama-server", a.peer)):
            port = free_port()
            servers[name] = (start_server([str(exe), *common, "--port", str(port)], port), f"http://127.0.0.1:{port}")
        for _, url in servers.values():  # warm-up round, not counted
            one_round(url, texts[:8], a.batch)
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(a.rounds):
            for name, (_, url) in servers.items():
                n, dt = one_round(url, texts, a.batch)
                rates[name].append(n / dt)
        print(f"all-MiniLM-L6-v2 F16, {len(texts)} sentences, {a.batch} per request, -t {a.threads}, {a.rounds} rounds")
        med = {name: statistics.median(r) for name, r in rates.items()}
        for name, r in rates.items():
            print(f"{name:13s} {med[name]:9.0f} tokens/s (median; rounds {', '.join(f'{x:.0f}' for x in r)})")
        print(f"llamajit / llama-server: {med['llamajit'] / med['llama-server']:.2f}")
    finally:
        for p, _ in servers.values():
            p.terminate()
            p.wait(20)


if __name__ == "__main__":
    main()
