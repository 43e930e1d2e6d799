"""Model benchmark: llamajit against llama.cpp's own llama-server, measured in one run.

For each real model: prefill tokens/s (a 512-token prompt), decode tokens/s (128 tokens
after a short prompt and after a 1,000-token prompt; 1 sequence, and 8 sequences decoded
together, aggregate), load time with a cold and a warm Numba cache, peak RSS, and the
share of a decode step spent outside the kernels (Python). The peer is llama-server
(built by ../shared/tools/build-llama-server), same threads, same token ids, its own
timings; each figure is printed with the ratio llamajit / llama-server.
Usage: python benchmarks/bench_model.py [--models smollm2,gemma3] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
BUILD = ROOT.parent / "shared" / "tools" / "build-llama-server"
THREADS = 2
N_DECODE = 128

# Runs in a fresh interpreter so that the load time and peak RSS are this model's alone.
WORKER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
from service.model.model import Model
from service.model.forward import Batch
path, n_dec = sys.argv[1], int(sys.argv[2])
m = Model(path, n_ctx=2048, n_seq=8, max_batch=512)
ids = np.random.default_rng(0).integers(100, 5000, 1100).tolist()
m.cache.clear(0); m.eval(0, ids[:8])  # the first call compiles or loads the kernels
ready = time.perf_counter() - t0
out = {"ready_s": ready}
def prefill():
    m.cache.clear(0); t = time.perf_counter(); m.eval(0, ids[:512]); return 512 / (time.perf_counter() - t)
prefill()
out["prefill"] = max(prefill() for _ in range(3))
def decode(ctx, n_seq):
    for s in range(n_seq):
        m.cache.clear(s); m.eval(s, ids[:ctx])
    t = time.perf_counter()
    for i in range(n_dec):
        m.forward(Batch(np.full(n_seq, 5, np.int32), np.arange(n_seq, dtype=np.int32),
                        np.full(n_seq, ctx + i, np.int32), np.ones(n_seq, bool)))
    return n_seq * n_dec / (time.perf_counter() - t)
out["decode_short"] = decode(16, 1)
out["decode_long"] = decode(1000, 1)
out["decode_8"] = decode(16, 8)
# Share of a decode step outside the kernels: time the jitted layers and the output head.
import service.model.forward as F
spent = [0.0]
def timed(fn):
    def run(*a):
        t = time.perf_counter(); r = fn(*a); spent[0] += time.perf_counter() - t; return r
    return run
F.layer, F.matmul = timed(F.layer), timed(F.matmul)
m.cache.clear(0); m.eval(0, ids[:16])
spent[0] = 0.0
t = time.perf_counter()
for i in range(n_dec):
    m.forward(Batch(np.full(1, 5, np.int32), np.zeros(1, np.int32), np.full(1, 16 + i, np.int32), np.ones(1, bool)))
total = time.perf_counter() - t
out["python_share"] = 100 * (1 - spent[0] / total)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out))
"""


def ours(model_path: Path, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, NUMBA_NUM_THREADS=str(THREADS))
    r = subprocess.run([sys.executable, "-c", WORKER, str(model_path), str(N_DECODE)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.split("RESULT ", 1)[1])


def _post(port: int, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.load(resp)


class _Server:
    """llama-server on loopback with n_parallel slots of 2,048 tokens each."""

    def __init__(self, binary: str, model_path: Path, n_parallel: int, port: int = 18089):
        self.port = port
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "-m", str(model_path), "-t", str(THREADS), "-c", str(2048 * n_parallel), "-np", str(n_parallel),
             "--port", str(port), "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
            if self.proc.poll() is not None or time.perf_counter() - t0 > 120:
                self.close()
                raise SystemExit("llama-server did not start")
        self.ready_s = time.perf_counter() - t0

    def complete(self, prompt: list[int], n_predict: int) -> dict:
        body = {"prompt": prompt, "n_predict": n_predict, "cache_prompt": False, "temperature": 0, "ignore_eos": True}
        return _post(self.port, body)

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int([ln for ln in f if ln.startswith("VmHWM")][0].split()[1]) / 1024

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def peer(binary: str, model_path: Path) -> dict:
    """The same workloads on llama-server: one slot for the single-sequence figures (as the
    reference figures were taken), eight slots for eight sequences decoded together."""
    import random

    rnd = random.Random(0)
    ids = [rnd.randrange(100, 5000) for _ in range(1100)]
    srv = _Server(binary, model_path, 1)
    try:
        out = {"ready_s": srv.ready_s}
        srv.complete(ids[:8], 1)
        out["prefill"] = max(srv.complete(ids[:512], 1)["timings"]["prompt_per_second"] for _ in range(3))
        out["decode_short"] = srv.complete(ids[:16], N_DECODE)["timings"]["predicted_per_second"]
        out["decode_long"] = srv.complete(ids[:1000], N_DECODE)["timings"]["predicted_per_second"]
        out["peak_rss_mb"] = srv.peak_rss_mb()
    finally:
        srv.close()
    srv = _Server(binary, model_path, 8)
    try:
        srv.complete(ids[:8], 1)
        with ThreadPoolExecutor(8) as ex:
            t = time.perf_counter()
            res = list(ex.map(lambda s: srv.complete(ids[s : s + 16], N_DECODE), range(8)))
            wall = time.perf_counter() - t
        # aggregate decode: tokens over the wall time less the (overlapping) prompt phase
        prompt_ms = max(r["timings"]["prompt_ms"] for r in res)
        out["decode_8"] = sum(r["timings"]["predicted_n"] for r in res) / (wall - prompt_ms / 1000)
    finally:
        srv.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-peer", action="store_true", help="skip llama-server")
    a = ap.parse_args()
    binary = None
    if not a.no_peer:
        binary = subprocess.run([str(BUILD)], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    rows = []
    for name in a.models.split(","):
        path = ROOT / "models" / MODELS[name]
        with tempfile.TemporaryDirectory() as cache:
            cold = ours(path, cache)
            warm = ours(path, cache)
        theirs = peer(binary, path) if binary else {}
        rows.append((name, cold, warm, theirs))
    keys = [("prefill", "prefill 512 tok/s"), ("decode_short", "decode tok/s, ctx 16"),
            ("decode_long", "decode tok/s, ctx 1000"), ("decode_8", "decode 8 seqs tok/s (sum)"),
            ("peak_rss_mb", "peak RSS MB"), ("ready_s", "ready s (warm cache)"),
            ("python_share", "% of a decode step outside kernels")]
    print(f"machine: {os.cpu_count()} cpus, {THREADS} threads\n")
    print(f"| model | metric | llamajit | llama-server | ratio |\n|---|---|---|---|---|")
    for name, cold, warm, theirs in rows:
        for k, label in keys:
            v, p = warm[k], theirs.get(k)
            ratio = f"{v / p:.2f}" if p else "-"
            print(f"| {name} | {label} | {v:.1f} | {p:.1f} | {ratio} |" if p else f"| {name} | {label} | {v:.1f} | - | - |")
        print(f"| {name} | ready s (cold Numba cache) | {cold['ready_s']:.1f} | | |")


if __name__ == "__main__":
    main()
