"""What the performance table runs on: the peers' venv, the machine, the servers' command lines.

llama.cpp's Python binding (`llama-cpp-python`, whose `llama_cpp.server` is an OpenAI HTTP
server) and matplotlib go into a venv of their own, built on demand and kept between runs
(~/.cache/llamajit-bench/venv, or $LLAMAJIT_BENCH_VENV): neither is a dependency of llamajit
or of its tests. The binding compiles llama.cpp from source (about 10 minutes on 2 cores);
when that fails or runs out of time, llama.cpp's own llama-server binary (built by
../shared/tools/build-llama-server) stands in, and the table says so.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "llamajit-bench"
VENV = Path(os.environ.get("LLAMAJIT_BENCH_VENV", CACHE / "venv"))
LLAMA_SERVER = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin" / "llama-server"
PEER_PACKAGES = ["llama-cpp-python[server]", "matplotlib"]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def _imports(mods: str) -> bool:
    py = venv_python()
    return py.exists() and subprocess.run([str(py), "-c", f"import {mods}"], capture_output=True).returncode == 0


def ensure_venv(timeout_s: float, install: bool = True) -> dict[str, str | None]:
    """Install what is missing; {"llama_cpp": version or None, "matplotlib": ..., "note": why not}."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    note = None
    if install and not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    missing = [p for p, m in zip(PEER_PACKAGES, ("llama_cpp.server", "matplotlib")) if not _imports(m)]
    if missing and not install:
        note = f"not installed ({', '.join(missing)}) and --no-install given"
    elif missing:
        log = CACHE / "install.log"
        print(f"installing {', '.join(missing)} into {VENV} (log: {log}); llama-cpp-python builds "
              "llama.cpp from source, about 10 minutes on 2 cores", flush=True)
        env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        t0 = time.monotonic()
        with open(log, "a") as f:
            try:
                rc = subprocess.run([str(venv_python()), "-m", "pip", "install", *missing], stdout=f,
                                    stderr=subprocess.STDOUT, env=env, timeout=timeout_s).returncode
            except subprocess.TimeoutExpired:
                rc = None
        if rc != 0:
            note = (f"pip install {' '.join(missing)} " + ("timed out" if rc is None else f"failed ({rc})")
                    + f" after {time.monotonic() - t0:.0f} s; see {log}")
            print(note, flush=True)
    return {"llama_cpp": _version("llama_cpp") if _imports("llama_cpp.server") else None,
            "matplotlib": _version("matplotlib") if _imports("matplotlib") else None, "note": note}


def _version(mod: str) -> str:
    out = subprocess.run([str(venv_python()), "-c", f"import {mod}; print({mod}.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def machine() -> dict[str, str]:
    """CPU model, cores and memory from /proc, for the table's caption."""
    cpu, cores = "unknown", os.cpu_count()
    try:
        info = Path("/proc/cpuinfo").read_text()
        names = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
        flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16") if f" {f}" in flags]
    except OSError:
        isa = []
    mem = "unknown"
    try:
        kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal"))
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    load = f"{loadavg():.1f}"
    return {"cpu": cpu, "cores": str(cores), "isa": " ".join(isa), "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_at_start": load,
            "commit": _git_commit()}


def loadavg() -> float:
    """The 1-minute load average: how much else the shared cores were running."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "?"


@dataclass
class ServerSpec:
    """How to start one server and know it is ready, and what its requests need."""

    name: str
    cmd: list[str]                      # without the port
    port_flag: str
    ready_path: str                     # answers 200 once the model is loaded
    extra_body: dict = field(default_factory=dict)  # fields that make generation run to max_tokens
    numba: bool = False                 # time to ready depends on the Numba cache
    serial: bool = False                # serves one request at a time


def specs(model: Path, threads: int, ctx: int, slots: int, peer: dict, eog_ids: list[int]) -> list[ServerSpec]:
    out = [ServerSpec("llamajit", [sys.executable, "-m", "service.cli", "-m", str(model), "--host", "127.0.0.1",
                                   "-np", str(slots), "-c", str(ctx), "-t", str(threads)], "--port", "/health",
                      {"ignore_eos": True, "cache_prompt": False}, numba=True)]
    if peer.get("llama_cpp"):
        # one Llama object behind a lock: it has no ignore_eos, a -100 bias keeps the end tokens out
        out.append(ServerSpec(f"llama-cpp-python {peer['llama_cpp']}",
                              [str(venv_python()), "-m", "llama_cpp.server", "--model", str(model), "--host",
                               "127.0.0.1", "--n_ctx", str(ctx), "--n_threads", str(threads),
                               "--n_threads_batch", str(threads),
                               # its default cuts a running stream off when the next request arrives
                               "--interrupt_requests", "False"], "--port", "/v1/models",
                              {"logit_bias": {str(t): -100.0 for t in eog_ids}}, serial=True))
    if LLAMA_SERVER.exists():
        out.append(ServerSpec("llama.cpp llama-server", [str(LLAMA_SERVER), "-m", str(model), "--host", "127.0.0.1",
                                                         "-np", str(slots), "-c", str(ctx), "-t", str(threads)],
                              "--port", "/health", {"ignore_eos": True, "cache_prompt": False}))
    return out


def eog_token_ids(model: Path) -> list[int]:
    """End-of-generation ids of a GGUF (eos, eot, and the chat end markers in its vocabulary)."""
    import gguf

    r = gguf.GGUFReader(str(model))
    ids = set()
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
        f = r.fields.get(key)
        if f is not None:
            ids.add(int(f.parts[f.data[0]][0]))
    toks = r.fields.get("tokenizer.ggml.tokens")
    if toks is not None:
        for i, idx in enumerate(toks.data):
            if bytes(toks.parts[idx]).decode(errors="replace") in ("<|im_end|>", "<|endoftext|>", "<end_of_turn>",
                                                                   "<eos>", "</s>", "<|eot_id|>"):
                ids.add(i)
    return sorted(ids)
