"""One model's server: a llamajit child process on a loopback port.

Why a process per model (llama-server's design too), not several engines in the router's process:
- isolation: a model that fails to load, runs out of memory or crashes in a kernel ends its own
  process; the router reports it `failed` with the exit code and the other models keep serving;
- each engine keeps its threading rule (kernels on the process's main thread, engine.py) and its
  own interpreter lock, so two models decode at the same time on different cores;
- unloading is exact: the process exits and the OS takes back every page, where a Python
  process rarely returns freed heap to the OS;
- the compiled kernels are shared anyway: Numba's `cache=True` writes them to disk once and each
  child loads them (a child is ready in about as long as a single-model server is: see the note
  of issue 17 for the figures).

State (a model's `status.value` in /models):

    UNLOADED --start()--> LOADING --/health answers 200--> LOADED
       ^                     |                                |
       +---- process exits --+----- stop() or process exits --+

A process that exits without stop() having asked is `failed` (with its exit code) until the next
start(). `stop()` sends SIGTERM (the child drains its requests, service.cli) and SIGKILL after
the stop timeout.
"""

from __future__ import annotations

import asyncio
import enum
import os
import signal
import socket
import sys
import time

import httpx
import structlog

from service.router.catalog import Entry

log = structlog.get_logger("llamajit.router")
CHILD_HOST = "127.0.0.1"
POLL_S = 0.05


class State(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((CHILD_HOST, 0))
        return s.getsockname()[1]


class Instance:
    def __init__(self, entry: Entry):
        self.entry = entry
        self.state = State.UNLOADED
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.args: list[str] = []  # the command line it runs with (shown in /models)
        self.failed = False
        self.exit_code = 0
        self.attempts = 0  # starts so far: a waiter knows whether the attempt it waited on failed
        self.stopping = False
        self.users = 0  # requests waiting for it or being forwarded to it: never evicted while > 0
        self.last_used = 0.0
        self.info: dict = {}  # its /v1/models entry once loaded, merged into the router's listing

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def running(self) -> bool:
        return self.state is not State.UNLOADED

    @property
    def idle(self) -> bool:
        return self.state is State.LOADED and self.users == 0 and not self.stopping

    def command(self, router_argv: list[str]) -> list[str]:
        from service.router import preset

        port = free_port()
        self.port = port
        return [*self.entry.model_args, *preset.to_argv(self.entry.options, skip={"alias"}),
                *preset.strip(router_argv, preset.RESERVED | {"alias"}),
                "--host", CHILD_HOST, "--port", str(port), "--alias", self.name]

    def begin(self, router_argv: list[str]) -> None:
        """UNLOADED -> LOADING, at once (start() runs later, as a task: nobody may queue it twice)."""
        self.args = ["llama-server", *self.command(router_argv)]
        self.state, self.failed, self.exit_code, self.stopping = State.LOADING, False, 0, False
        self.proc = None
        self.attempts += 1
        self.last_used = time.monotonic()

    async def start(self, environ: dict[str, str], on_change) -> None:
        """Spawn the child (after begin()) and watch it until it is ready and then until it exits."""
        from service.router.app import FAKE_TIMING

        if FAKE_TIMING:  # llama-server's test hook (service.router.app)
            await asyncio.sleep(2)
        if self.entry.mmproj:
            log.warning("projector left out: llamajit has no multimodal input yet", model=self.name,
                        mmproj=self.entry.mmproj)
        log.info("loading model", model=self.name, port=self.port)
        on_change(self)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "service.cli", *self.args[1:], env=environ,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)  # signals reach it from us only
        except OSError as e:
            log.error("cannot start the model's server", model=self.name, error=str(e))
            self.state, self.failed, self.exit_code = State.UNLOADED, True, -1
            on_change(self)
            return
        asyncio.get_running_loop().create_task(self._watch(on_change))
        if self.stopping:  # stop() came before the process existed
            self._terminate()
        await self._wait_ready(on_change)

    async def _wait_ready(self, on_change) -> None:
        proc = self.proc
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while proc.returncode is None and self.state is State.LOADING and not self.stopping:
                try:
                    r = await client.get("/health")
                    if r.status_code == 200:
                        models = (await client.get("/v1/models")).json().get("data") or [{}]
                        self.info = models[0]
                        self.state = State.LOADED
                        log.info("model loaded", model=self.name, port=self.port)
                        on_change(self)
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(POLL_S)

    async def _watch(self, on_change) -> None:
        proc = self.proc
        code = await proc.wait()
        if proc is not self.proc:
            return
        self.failed = not self.stopping and code != 0 or (self.state is State.LOADING and not self.stopping)
        self.exit_code = code
        self.state, self.stopping, self.info = State.UNLOADED, False, {}
        (log.error if self.failed else log.info)("model unloaded", model=self.name, exit_code=code,
                                                 failed=self.failed)
        on_change(self)

    def stop(self) -> None:
        """Ask the child to exit (SIGTERM), and kill it after the stop timeout."""
        if self.state is State.UNLOADED or self.stopping:
            return
        self.stopping = True
        log.info("unloading model", model=self.name)
        if self.proc is not None:
            self._terminate()

    def _terminate(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            asyncio.get_running_loop().create_task(self._kill_after(self.proc, self.entry.stop_timeout))

    @staticmethod
    async def _kill_after(proc, seconds: float) -> None:
        try:
            await asyncio.wait_for(proc.wait(), seconds)
        except TimeoutError:
            log.warning("model did not stop in time: killing it", pid=proc.pid)
            proc.kill()

    def kill_now(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    @property
    def url(self) -> str:
        return f"http://{CHILD_HOST}:{self.port}"

    def status(self, sleeping: bool = False) -> dict:
        """llama-server's `status` object of /models."""
        out: dict = {"value": "sleeping" if sleeping else self.state.value, "args": self.args}
        if self.failed:
            out["failed"], out["exit_code"] = True, self.exit_code
        return out
