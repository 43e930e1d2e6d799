"""A real `llama-server` subprocess on loopback, for the black-box HTTP tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# The KV cache types a server runs without -ctk / -ctv (llama-server's default); an in-process
# Model whose numbers are compared with a server's takes these (its own default is f32).
SERVER_CACHE_TYPES = ("f16", "f16")
GEMMA3 = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str, env: dict | None = None, model: Path | None = SMOLLM2,
                 module: str = "service.cli"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        head = ["-m", str(model)] if model is not None else []
        argv = [sys.executable, "-m", module, *head,
                "--port", str(self.port), *args]
        # The black-box tests pin the CPU runtime unless a test asks otherwise: on a GPU machine
        # -ngl auto would offload everything (GPU coverage: test_http_offload, test_gpu_models).
        full_env = {"LLAMA_ARG_N_GPU_LAYERS": "0", **os.environ, **(env or {})}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._lines: list[str] = []  # read on a thread: a full pipe would block the server's log writes
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line)

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                httpx.get(self.url + "/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("server did not listen")

    def wait_ready(self, timeout: float = 300) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server not ready")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kw)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        """Everything the server printed so far (all of it once the process has exited)."""
        if self.proc.poll() is not None:
            self._reader.join(5)
        return "".join(self._lines)


class LoggedServer:
    """A ServerProcess whose stop() returns everything the server printed (for log checks)."""

    def __init__(self, *args: str):
        self.srv = ServerProcess(*args)

    def stop(self) -> str:
        self.srv.stop()
        return self.srv.output()


def sse_events(resp: httpx.Response) -> list:
    """Parse an SSE body into ("data", obj) / ("error", obj) / ("done", None) tuples; an error is
    llama-server's `data: {"error": {...}}`; an `error:` field (older llama-servers' framing, which
    EventSource clients drop) comes back as ("error-field", obj), so that no test takes it for one."""
    import json

    out = []
    for block in resp.text.split("\n\n"):
        if not block.strip():
            continue
        field, _, value = block.partition(": ")
        if field == "data" and value.strip() == "[DONE]":
            out.append(("done", None))
        else:
            obj = json.loads(value)
            if field == "data" and isinstance(obj, dict) and list(obj) == ["error"]:
                field, obj = "error", obj["error"]
            elif field == "error":
                field = "error-field"
            out.append((field, obj))
    return out
