"""What the server benchmarks share: start a server (ours or llama.cpp's) and wait for /health,
and read a process's memory from /proc."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def start_server(cmd: list[str], port: int, timeout: float = 600) -> subprocess.Popen:
    """cmd started in the repository root, once its /health on port answers 200; an exit or
    the timeout raises."""
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return p
        except httpx.TransportError:
            pass
        if p.poll() is not None:
            raise RuntimeError(f"{cmd} exited {p.returncode}")
        time.sleep(0.2)
    p.kill()
    raise TimeoutError(cmd[0])


def status_mib(pid: int) -> dict[str, float]:
    """VmHWM, VmRSS, RssAnon and RssFile of a process, MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out
