"""`make loadtest`: a local llama-server on loopback, a short headless locust run against it.

    python loadtests/run_local.py [--model PATH] [--users 6] [--run-time 30s] [--out DIR]
                                  [--parallel 4] [--server-cmd "..."] [-- locust options]

The server (llamajit's by default, or any llama-server given with --server-cmd) gets a free
port, --metrics, --embeddings --pooling mean (so the embedding user has a route) and a random
API key passed to both sides through LLAMA_API_KEY. Locust writes <out>/loadtest_*.csv and
<out>/loadtest.html; the server's log goes to <out>/server.log. The exit code is locust's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from tests.server_proc import SMOLLM2, free_port  # noqa: E402


def wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server not ready after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(SMOLLM2))
    ap.add_argument("--users", type=int, default=6, help="locust users (6: one of each user class)")
    ap.add_argument("--run-time", default="30s")
    ap.add_argument("--parallel", type=int, default=4, help="server slots (-np)")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "loadtest"))
    ap.add_argument("--server-cmd", default=f"{shlex.quote(sys.executable)} -m service.cli",
                    help="llama-server command line, without -m/--port")
    ap.add_argument("--ready-timeout", type=float, default=600)
    ap.add_argument("locust_args", nargs=argparse.REMAINDER, help="after --: passed to locust")
    a = ap.parse_args(argv)
    extra = a.locust_args[1:] if a.locust_args[:1] == ["--"] else a.locust_args

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LLAMA_API_KEY": os.environ.get("LLAMA_API_KEY") or secrets.token_hex(16)}
    server = [*shlex.split(a.server_cmd), "-m", a.model, "--host", "127.0.0.1", "--port", str(port),
              "-np", str(a.parallel), "--metrics", "--embeddings", "--pooling", "mean"]
    print("server:", " ".join(server), flush=True)
    with open(out / "server.log", "w") as log:
        proc = subprocess.Popen(server, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            t0 = time.monotonic()
            wait_ready(proc, url, a.ready_timeout)
            print(f"server ready in {time.monotonic() - t0:.1f} s at {url}", flush=True)
            cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
                   "-H", url, "-u", str(a.users), "-r", str(a.users), "-t", a.run_time,
                   "--stop-timeout", "120", "--csv", str(out / "loadtest"), "--html", str(out / "loadtest.html"),
                   *extra]
            print("locust:", " ".join(cmd), flush=True)
            return subprocess.call(cmd, cwd=ROOT, env=env)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
