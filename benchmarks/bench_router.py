"""Router benchmark: llamajit's router against llama.cpp's, same models directory, same run.

Both real models (SmolLM2 135M, Gemma 3 270M) in one --models-dir. For each server:
- RSS of the router alone, with one model loaded, with both loaded (the router and its child
  processes summed, from /proc);
- first load: a request naming an unloaded model, until its answer (spawn, load, warm-up, reply);
- switch: at --models-max 1, a request for the other model (unload the LRU one, load, reply),
  the median of alternating switches.

    python benchmarks/bench_router.py [--peer PATH] [--switches 4]

The peer is built by ../shared/tools/build-llama-server; without it only llamajit is measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.server_proc import GEMMA3, SMOLLM2, free_port  # noqa: E402

PEER = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin" / "llama-server"
BODY = {"content": "Hello world"}


def rss_tree_mib(pid: int) -> float:
    """RSS of pid and every descendant, MiB."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def status(c: httpx.Client, name: str) -> str:
    return next(m for m in c.get("/models").json()["data"] if m["id"] == name)["status"]["value"]


def settle(c: httpx.Client, names: list[str], timeout: float = 60) -> None:
    """Wait until no model is loading or stopping (RSS is read then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(status(c, n) == "loading" for n in names):
        time.sleep(0.05)
    time.sleep(1.0)


def measure(label: str, cmd: list[str], port: int, switches: int) -> dict:
    url = f"http://127.0.0.1:{port}"
    out: dict = {}
    for models_max in ("2", "1"):
        p = subprocess.Popen([*cmd, "--models-max", models_max], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            with httpx.Client(base_url=url, timeout=300) as c:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if c.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(label)
                    time.sleep(0.1)
                if models_max == "2":
                    out["rss_router"] = rss_tree_mib(p.pid)
                    t0 = time.perf_counter()
                    assert c.post("/tokenize", json={**BODY, "model": "smol"}).status_code == 200
                    out["first_load_s"] = time.perf_counter() - t0
                    settle(c, ["smol"])
                    out["rss_one"] = rss_tree_mib(p.pid)
                    assert c.post("/tokenize", json={**BODY, "model": "gemma"}).status_code == 200
                    settle(c, ["smol", "gemma"])
                    out["rss_two"] = rss_tree_mib(p.pid)
                else:
                    assert c.post("/tokenize", json={**BODY, "model": "smol"}).status_code == 200
                    times = []
                    for i in range(switches):
                        name = ("gemma", "smol")[i % 2]
                        t0 = time.perf_counter()
                        assert c.post("/tokenize", json={**BODY, "model": name}).status_code == 200
                        times.append(time.perf_counter() - t0)
                    out["switch_s"] = statistics.median(times)
        finally:
            os.killpg(p.pid, 15)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        time.sleep(1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", type=Path, default=PEER)
    ap.add_argument("--switches", type=int, default=4)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.symlink(SMOLLM2, Path(d) / "smol.gguf")
        os.symlink(GEMMA3, Path(d) / "gemma.gguf")
        common = ["--models-dir", d, "-c", "1024", "-np", "1", "-t", "1", "--host", "127.0.0.1"]
        env_cache = tempfile.mkdtemp()
        os.environ["LLAMA_CACHE"] = env_cache  # an empty cache: only the directory's models
        runs = {}
        port = free_port()
        runs["llamajit"] = measure("llamajit", [sys.executable, "-m", "service.cli", *common, "--port", str(port)],
                                   port, a.switches)
        if a.peer.exists():
            port = free_port()
            runs["llama.cpp"] = measure("llama.cpp", [str(a.peer), *common, "--port", str(port)], port, a.switches)
    rows = [("router alone, RSS MiB", "rss_router"), ("one model loaded, RSS MiB", "rss_one"),
            ("two models loaded, RSS MiB", "rss_two"), ("first load + answer, s", "first_load_s"),
            ("switch at --models-max 1, s (median)", "switch_s")]
    print(f"{'':40s}" + "".join(f"{k:>14s}" for k in runs) + ("      ratio" if len(runs) == 2 else ""))
    for title, key in rows:
        vals = [runs[k][key] for k in runs]
        ratio = f"{vals[0] / vals[1]:11.2f}" if len(vals) == 2 and vals[1] else ""
        print(f"{title:40s}" + "".join(f"{v:14.2f}" for v in vals) + ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
