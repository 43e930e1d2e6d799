"""Memory at defaults: llamajit against llama.cpp's llama-server, in the same run (issue 16's target).

Per model, each server starts with its defaults (-t 2 only), serves one 64-token greedy completion,
and is measured after it: peak RSS (VmHWM), RSS (VmRSS) and its split into anonymous and file pages,
MiB, and the RSS of its child processes (llamajit's chat-template worker). The ratio is llamajit's
peak (children included) over llama-server's.

    python benchmarks/bench_memory.py [--models smollm2,gemma3] [--peer PATH]   (make bench-memory)

Measured on the 2-core development machine (Dec 2026, warm Numba cache), peak MiB:
    SmolLM2-135M Q4_1   llamajit 373-374 (+23 worker)  llama-server 310   1.28x (1.21x without the worker)
    Gemma 3 270M Q4_K_M llamajit 568-580 (+23 worker)  llama-server 454   1.30-1.33x (1.25-1.28x)
llama-server's file pages are its weights (it computes from the mapped file); ours are the
libraries' (libllvmlite alone 71 MiB), the weights live packed in anonymous memory.
Before chunked packing and the release of packed tensors' file pages (service.gguf_reader):
496 and 1,288 MiB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.serving import start_server, status_mib  # noqa: E402
from tests.server_proc import GEMMA3, SMOLLM2, free_port  # noqa: E402

PEER = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin" / "llama-server"
MODELS = {"smollm2": SMOLLM2, "gemma3": GEMMA3}
OURS = ROOT / ".venv" / "bin" / "llama-server"


def children_rss_mib(pid: int) -> float:
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return sum(status_mib(int(k)).get("VmRSS", 0.0) for k in kids)


def measure(exe: Path, model: Path) -> dict[str, float]:
    """Start exe on model, serve one completion, and read its memory."""
    port = free_port()
    p = start_server([str(exe), "-m", str(model), "--port", str(port), "-t", "2"], port)
    try:
        url = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{url}/completion", json={"prompt": "Tell me a story", "n_predict": 64, "temperature": 0},
                       timeout=300)
        r.raise_for_status()
        time.sleep(0.5)
        return status_mib(p.pid) | {"children": children_rss_mib(p.pid)}
    finally:
        p.terminate()
        p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--peer", type=Path, default=PEER, help="llama.cpp's llama-server binary")
    args = ap.parse_args()
    if not args.peer.exists():
        sys.exit(f"no llama-server at {args.peer}: build it with ../shared/tools/build-llama-server")
    print(f"{'model':9s} {'server':13s} {'peak':>7s} {'rss':>7s} {'anon':>7s} {'file':>7s} {'children':>9s}  ratio")
    for name in args.models.split(","):
        rows = {"llamajit": measure(OURS, MODELS[name]), "llama-server": measure(args.peer, MODELS[name])}
        for server, m in rows.items():
            ratio = ""
            if server == "llamajit":
                peer = rows["llama-server"]["VmHWM"]
                ratio = f"{(m['VmHWM'] + m['children']) / peer:.2f}x ({m['VmHWM'] / peer:.2f}x without children)"
            print(f"{name:9s} {server:13s} {m['VmHWM']:7.0f} {m['VmRSS']:7.0f} {m['RssAnon']:7.0f} {m['RssFile']:7.0f} "
                  f"{m['children']:9.0f}  {ratio}", flush=True)


if __name__ == "__main__":
    main()
