"""The render worker: a child process that runs chat templates, so a hostile one cannot hurt us.

A chat template comes from a GGUF file or a command line, and jinja2's sandbox guards attribute
access but not resources: `{% for i in r %}{% for j in r %}...` spins without ever calling a hook,
`[s] * 99999 | string` allocates gigabytes in one C call, comparisons of deeply shared lists take
exponential time. In-process guards would be whack-a-mole; a separate process has two hard
limits the operating system enforces: an address-space cap (MemoryError, or death) and a
wall-clock deadline after which the parent kills it. The parent then starts a fresh one.

Protocol: one JSON object per line each way, over the child's stdin/stdout.
    {"op": "compile", "source": S}                     -> {"ok": true} | {"ok": false, ...}
    {"op": "render", "source": S, "context": {...}, "messages": [M1, M2, ...],
     "output_limit": N, "time_limit": T}               -> {"results": [R1, R2, ...]}
Each R is {"ok": true, "text": str} or {"ok": false, "kind": K, "message": str} with K one of
syntax, raised, time, size, security, error; one render per message list, all sharing one
deadline.

Run as `python -m service.chat MEMORY_LIMIT_BYTES` (service/chat/__main__.py calls serve()).
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# -- child side ---------------------------------------------------------------------------------


def _failure(kind: str, exc: BaseException) -> dict:
    return {"ok": False, "kind": kind, "message": str(exc) or type(exc).__name__}


def serve() -> None:
    import resource  # noqa: PLC0415 (child only)

    from jinja2 import TemplateSyntaxError  # noqa: PLC0415

    from .sandbox import ChatSandbox, RenderLimit, SecurityError, TemplateRaised, render_bounded

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; we exit on EOF
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    env = ChatSandbox()
    compiled: dict[str, object] = {}

    def template_of(source: str):
        tmpl = compiled.get(source)
        if tmpl is None:
            if len(compiled) >= 16:
                compiled.clear()
            tmpl = compiled[source] = env.from_string(source)
        return tmpl

    def render(req: dict) -> dict:
        try:
            tmpl = template_of(req["source"])
        except TemplateSyntaxError as e:
            fail = _failure("syntax", e)
            return {"results": [fail for _ in req["messages"]]}
        deadline = time.monotonic() + float(req["time_limit"])
        results = []
        for messages in req["messages"]:
            context = dict(req["context"], messages=messages)
            try:
                text = render_bounded(tmpl, context, output_limit=int(req["output_limit"]),
                                      deadline=deadline, env=env)
                results.append({"ok": True, "text": text})
            except TemplateRaised as e:
                results.append(_failure("raised", e))
            except RenderLimit as e:
                results.append(_failure(e.kind, e))
            except SecurityError as e:
                results.append(_failure("security", e))
            except MemoryError as e:
                results.append(_failure("size", MemoryError(f"out of memory ({e})")))
            except Exception as e:  # noqa: BLE001 (any template failure is reported, not fatal)
                results.append(_failure("error", Exception(f"{type(e).__name__}: {e}")))
        return {"results": results}

    def handle(req: dict) -> dict:
        if req.get("op") == "compile":
            try:
                template_of(req["source"])
                return {"ok": True}
            except TemplateSyntaxError as e:
                return _failure("syntax", e)
            except Exception as e:  # noqa: BLE001 (e.g. RecursionError on absurd nesting)
                return _failure("error", Exception(f"{type(e).__name__}: {e}"))
        return render(req)

    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        out.write(_encode(handle(_decode(line))) + b"\n")
        out.flush()


# -- parent side --------------------------------------------------------------------------------


class WorkerFailure(Exception):
    """The worker timed out (`kind` "time") or died or misbehaved (`kind` "error"); it has been
    killed and the next request starts a fresh one."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class RenderWorker:
    """The parent's handle on one worker process, started on first use; one request at a time."""

    def __init__(self, memory_limit: int = 1 << 30):
        self.memory_limit = memory_limit
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = 0  # pid that started _proc: a forked child must not share its pipes

    def request(self, req: dict, timeout: float, reply_cap: int = 64 << 20) -> dict:
        payload = _encode(req) + b"\n"
        with self._lock:
            for attempt in (0, 1):
                proc = self._ensure()
                try:
                    _write_all(proc.stdin.fileno(), payload)
                    break
                except OSError:  # died while idle (OOM killer, someone's kill): start another
                    self._discard()
                    if attempt:
                        raise WorkerFailure("error", "chat template worker cannot be started")
            try:
                line = _read_line(proc.stdout.fileno(), time.monotonic() + timeout, reply_cap)
                return _decode(line)
            except WorkerFailure:
                self._discard()
                raise
            except msgspec.DecodeError as e:
                self._discard()
                raise WorkerFailure("error", f"chat template worker sent garbage: {e}") from None

    def start(self) -> None:
        """Start the process now instead of at the first request: its interpreter start (0.1-0.2 s
        of imports) then overlaps the server's model load instead of delaying the first compile."""
        with self._lock:
            self._ensure()

    def close(self) -> None:
        with self._lock:
            self._discard()

    def _ensure(self) -> subprocess.Popen:
        if self._proc is not None and self._owner != os.getpid():
            self._proc = None  # inherited across fork: the parent still owns that process
        if self._proc is None or self._proc.poll() is not None:
            root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
            self._proc = subprocess.Popen(
                # -P: the server's working directory must not shadow our package
                [sys.executable, "-P", "-m", "service.chat", str(self.memory_limit)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
            self._owner = os.getpid()
        return self._proc

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and self._owner == os.getpid():
            proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_line(fd: int, deadline: float, cap: int) -> bytes:
    buf = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise WorkerFailure("time", "chat template rendering exceeded its time limit")
        data = os.read(fd, 1 << 20)
        if not data:
            raise WorkerFailure("error", "chat template worker died (out of memory or crashed)")
        start = len(buf)
        buf += data
        end = buf.find(b"\n", start)
        if end >= 0:
            return bytes(buf[:end])
        if len(buf) > cap:
            raise WorkerFailure("error", "chat template worker reply exceeds its size limit")


shared_worker = RenderWorker()
atexit.register(shared_worker.close)
