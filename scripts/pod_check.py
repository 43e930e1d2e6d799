"""Run the built image's filesystem as the chart's pod runs it, on a machine with no container
engine, and measure: time to ready, kernels compiled at start, SIGTERM drain of a stream.

    sudo python3 scripts/pod_check.py --rootfs DIR --image-config JSON [--model-dir DIR] [--no-cache-copy]

DIR is the image's root filesystem (e.g. what `buildah mount` gives for a container made from
the image that ../shared/tools/build-image builds; see the README's Kubernetes section), JSON
its config (`buildah inspect --type image IMAGE`: ENV, WORKDIR, USER). Each
container of the pod is started as a container runtime would, with what the chart's default
values render (helm/llamajit/templates/deployment.yaml):

- mount and PID namespaces of its own (the server is PID 1, so SIGTERM reaches it as the
  kubelet sends it); the host's network (the server listens on 127.0.0.1);
- the image's root read-only (readOnlyRootFilesystem), with the chart's writable volumes:
  `tmp` (an emptyDir) at /tmp and `numba-cache` (an emptyDir) at /var/cache/llamajit/numba;
  the model folder bind-mounted read-only at /models (BAKE_MODEL=1 images have it already);
- uid/gid 10001, supplementary group 10001 (fsGroup), no capabilities, an empty bounding
  set and no_new_privs (runAsNonRoot, capabilities.drop ALL, allowPrivilegeEscalation false);
- the image's ENV and WORKDIR, the chart's env and args;
- first the numba-cache init container (`cp -R` of the image's precompiled kernels), unless
  --no-cache-copy (server.numbaCache.copyFromImage=false).

Not the pod: no network namespace, no cgroup limits, no seccomp profile. Needs root.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

UID = GID = 10001
NUMBA_DIR = "/var/cache/llamajit/numba"
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
KEY = "pod-check-key"
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24


# -- inside the new namespaces: mounts, then the container's process --------------------------

def _container(spec: dict) -> None:
    """PID 1 of a fresh mount+PID namespace: lay out the container's mounts, drop to its user, exec."""
    root, vols = spec["rootfs"], spec["volumes"]
    sh = lambda *a: subprocess.run(a, check=True)  # noqa: E731
    sh("mount", "--make-rprivate", "/")
    sh("mount", "--bind", root, root)
    sh("mount", "-o", "remount,bind,ro", root)
    for target, (src, ro) in vols.items():
        sh("mount", "--bind", src, root + target)
        if ro:
            sh("mount", "-o", "remount,bind,ro", root + target)
    sh("mount", "-t", "proc", "proc", root + "/proc")
    sh("mount", "--rbind", "/dev", root + "/dev")
    sh("mount", "--rbind", "/sys", root + "/sys")
    sh("mount", "-o", "remount,bind,ro", root + "/sys")
    os.chroot(root)
    os.chdir(spec["workdir"])
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):  # an empty bounding set: nothing exec'd may gain a capability
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # EINVAL: no such cap
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")
    os.setgroups([GID])
    os.setresgid(GID, GID, GID)
    os.setresuid(UID, UID, UID)  # uid 0 -> 10001 clears the permitted and effective sets
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    argv = spec["argv"]
    path = next(f"{d}/{argv[0]}" for d in spec["env"]["PATH"].split(":") if os.access(f"{d}/{argv[0]}", os.X_OK))
    os.execve(path, argv, spec["env"])


# -- outside: the pod --------------------------------------------------------------------------

def image_config(path: Path) -> tuple[dict[str, str], str, str]:
    """ENV, WORKDIR and USER from the image's config (`buildah inspect --type image IMAGE` output)."""
    cfg = json.loads(path.read_text())["OCIv1"]["config"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    return env | {"HOME": "/nonexistent"}, cfg.get("WorkingDir") or "/", cfg.get("User", "")


class Pod:
    def __init__(self, rootfs: Path, config: Path, model_dir: Path | None, work: Path):
        self.rootfs, self.work = rootfs, work
        self.tmp, self.numba = work / "tmp", work / "numba"
        for d in (self.tmp, self.numba):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)  # an emptyDir's mode
        # the runtime makes missing mount points in the container's (writable) layer before the
        # root goes read-only; so do we
        (rootfs / NUMBA_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self.models = model_dir
        self.env, self.workdir, user = image_config(config)
        if user != f"{UID}:{GID}":
            raise SystemExit(f"the image's USER is {user!r}, the chart runs {UID}:{GID}")
        self.port = free_port()

    def start(self, argv: list[str], env: dict[str, str], volumes: dict, log: Path) -> subprocess.Popen:
        spec = {"rootfs": str(self.rootfs), "workdir": self.workdir, "argv": argv, "env": self.env | env,
                "volumes": {k: (str(s), ro) for k, (s, ro) in volumes.items()}}
        return subprocess.Popen(["unshare", "--mount", "--pid", "--fork", sys.executable, __file__, "--_container",
                                 json.dumps(spec)], stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def volumes(self, with_tmp: bool = True) -> dict:
        v = {NUMBA_DIR: (self.numba, False)}
        if with_tmp:
            v["/tmp"] = (self.tmp, False)
        if self.models:
            v["/models"] = (self.models, True)
        return v

    def init_numba_cache(self) -> None:
        p = self.start(["cp", "-R", "/opt/llamajit/numba-cache/.", NUMBA_DIR + "/"], {}, self.volumes(False),
                       self.work / "init.log")
        if p.wait() != 0:
            raise SystemExit(f"numba-cache init container failed: {(self.work / 'init.log').read_text()}")

    def server(self, log: Path) -> subprocess.Popen:
        args = ["llama-server", "--host", "127.0.0.1", "--port", str(self.port), "--model", f"/models/{MODEL}",
                "--ctx-size", "4096", "--parallel", "4", "--threads", "2", "--metrics", "--drain-timeout", "60"]
        return self.start(args, {"NUMBA_CACHE_DIR": NUMBA_DIR, "NUMBA_NUM_THREADS": "2", "LLAMA_API_KEY": KEY},
                          self.volumes(), log)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid1(unshare: subprocess.Popen) -> int:
    """The container's PID 1 (unshare's child), as the host sees it."""
    for _ in range(100):
        kids = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("the container's process did not start")


def status(url: str, body: dict | None = None) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def wait_ready(pod: Pod, proc: subprocess.Popen, limit: float = 900) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if status(pod.url("/health")) == 200:
            return time.monotonic() - t0
        if proc.poll() is not None:
            raise SystemExit(f"the server exited {proc.returncode} before ready")
        time.sleep(0.2)
    raise SystemExit("not ready in time")


def cache_files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*.nb[ic]")}


def drain(pod: Pod, proc: subprocess.Popen) -> dict:
    """A stream in flight, then SIGTERM to PID 1: /health and new requests 503, the stream ends, exit 0."""
    events, done = [], threading.Event()

    def stream():
        body = {"messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
                "max_tokens": 200, "stream": True, "ignore_eos": True}
        req = urllib.request.Request(pod.url("/v1/chat/completions"), data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            for line in r:
                if line.startswith(b"data: "):
                    events.append((time.monotonic(), line[6:].strip()))
        done.set()

    threading.Thread(target=stream, daemon=True).start()
    while len(events) < 5:
        time.sleep(0.05)
    t_term = time.monotonic()
    os.kill(pid1(proc), signal.SIGTERM)
    time.sleep(0.3)
    health = status(pod.url("/health"))
    new = status(pod.url("/v1/chat/completions"), {"messages": [{"role": "user", "content": "hi"}]})
    rc = proc.wait(timeout=120)
    t_exit = time.monotonic()
    done.wait(5)
    last = [e for e in events if e[1] != b"[DONE]"][-1][1]
    finish = json.loads(last)["choices"][0].get("finish_reason")
    return {"chunks_before_sigterm": sum(t < t_term for t, _ in events),
            "chunks_after_sigterm": sum(t >= t_term for t, _ in events),
            "stream_done": events[-1][1] == b"[DONE]", "finish_reason": finish, "health_while_draining": health,
            "new_request_while_draining": new, "exit_code": rc, "sigterm_to_exit_s": round(t_exit - t_term, 2)}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--_container":
        _container(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", type=Path, required=True)
    ap.add_argument("--image-config", type=Path, required=True, help="`buildah inspect --type image IMAGE` output")
    ap.add_argument("--model-dir", type=Path, help="bind-mounted read-only at /models (else the baked model)")
    ap.add_argument("--no-cache-copy", action="store_true", help="no numba-cache init container: compile at start")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, mounts, chroot)")
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="pod-check-") as work:
        pod = Pod(a.rootfs.resolve(), a.image_config, a.model_dir.resolve() if a.model_dir else None, Path(work))
        if not a.no_cache_copy:
            t = time.monotonic()
            pod.init_numba_cache()
            out["init_copy_s"] = round(time.monotonic() - t, 2)
        copied = cache_files(pod.numba)
        out["kernels_copied"] = len(copied)
        for run in ("first_start", "restart"):  # a container restart keeps the pod's emptyDirs
            log = Path(work) / f"{run}.log"
            proc = pod.server(log)
            out[f"{run}_ready_s"] = round(wait_ready(pod, proc), 2)
            out[f"{run}_compiled_at_start"] = sorted(cache_files(pod.numba) - copied)
            copied = cache_files(pod.numba)
            out[f"{run}_chat"] = status(pod.url("/v1/chat/completions"), {"messages": [{"role": "user", "content": "Say hi"}],
                                                                        "max_tokens": 8})
            out[f"{run}_drain"] = drain(pod, proc)
            out[f"{run}_compiled_by_requests"] = sorted(cache_files(pod.numba) - copied)  # a stream with ignore_eos
            copied = cache_files(pod.numba)
            text = log.read_text(errors="replace")
            out[f"{run}_log_errors"] = [ln for ln in text.splitlines() if "Read-only" in ln or "Permission denied" in ln
                                         or '"level": "error"' in ln]
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
