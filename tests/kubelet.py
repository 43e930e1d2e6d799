"""A kubelet for one pod of the rendered Deployment, on loopback, without a cluster or Docker.

What it does as the kubelet would:
- the container's environment is the image's ENV (the Dockerfile's runtime stage) overlaid with
  the pod's env and envFrom, valueFrom resolved from the rendered Secrets and ConfigMaps
  (secretKeyRef, configMapKeyRef) and from the pod (fieldRef); HOME is the image user's home;
- init containers run in order, each to exit 0, before the main container;
- command and args as rendered, run in the image's WORKDIR;
- the three probes (tests/kubelet_probe.py) from the container's start, Ready when readiness
  says so; a liveness or startup failure kills the container (recorded: tests expect none);
- deletion: liveness and startup probes stop, the preStop exec hook runs (its time counts
  against terminationGracePeriodSeconds), then the image's STOPSIGNAL; SIGKILL when the grace
  period runs out.

How the container's world is mapped onto this machine:
- the image's filesystem is a folder (tests/container_image.py: build_rootfs);
- each volume mount is a folder of its own (emptyDir: empty; persistentVolumeClaim: the folder
  the test gives for the claim); absolute paths in command, args and env are translated through
  the container's mounts, else through rootfs;
- the pod's network namespace: the pod's address is 127.0.0.1 and each containerPort maps to a
  free port of this machine, in the args as in the probes; --host 0.0.0.0 becomes 127.0.0.1
  (a shared machine's other interfaces are not the pod's).
Not emulated: readOnlyRootFilesystem and readOnly mounts (the tests run as root, which writes
anywhere), runAsUser/runAsNonRoot, dropped capabilities, resource limits, seccomp.
"""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.container_image import Image
from tests.kubelet_probe import ProbeWorker, Result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Pod:
    """One pod of a rendered Deployment, with the rendered Secrets and ConfigMaps it refers to."""
    docs: list[dict]
    name: str = "llamajit-7d4f9c8b6-x2kq4"
    namespace: str = "llm"

    def __post_init__(self) -> None:
        (dep,) = [d for d in self.docs if d["kind"] == "Deployment"]
        self.template = dep["spec"]["template"]
        self.spec = self.template["spec"]

    def container(self, name: str) -> dict:
        (c,) = [c for c in self.spec["containers"] + self.spec.get("initContainers", []) if c["name"] == name]
        return c

    def _object(self, kind: str, name: str) -> dict | None:
        return next((d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name), None)

    def _data(self, kind: str, name: str) -> dict[str, str]:
        obj = self._object(kind, name)
        if obj is None:
            raise LookupError(f"CreateContainerConfigError: {kind.lower()} {name!r} not found")
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()} | obj.get("stringData", {})
        return dict(obj.get("data", {}))

    def env(self, c: dict) -> tuple[dict[str, str], set[str]]:
        """The pod's contribution to the container's environment, valueFrom resolved; and the names
        whose values are data (from Secrets, ConfigMaps, the pod), never container paths."""
        out: dict[str, str] = {}
        for src in c.get("envFrom", []):
            kind, ref = ("Secret", src["secretRef"]) if "secretRef" in src else ("ConfigMap", src["configMapRef"])
            out |= {src.get("prefix", "") + k: v for k, v in self._data(kind, ref["name"]).items()}
        data = set(out)
        for e in c.get("env", []):
            if "value" in e:
                out[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: out.get(m[1], m[0]), e["value"])
                data.discard(e["name"])
                continue
            data.add(e["name"])
            vf = e["valueFrom"]
            if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                kind, ref = ("Secret", vf["secretKeyRef"]) if "secretKeyRef" in vf else ("ConfigMap", vf["configMapKeyRef"])
                try:
                    out[e["name"]] = self._data(kind, ref["name"])[ref["key"]]
                except (LookupError, KeyError):
                    if not ref.get("optional"):
                        raise
            elif "fieldRef" in vf:
                out[e["name"]] = {"metadata.name": self.name, "metadata.namespace": self.namespace,
                                  "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
                                  "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
                                  }[vf["fieldRef"]["fieldPath"]]
            else:
                raise NotImplementedError(f"valueFrom {sorted(vf)} of {e['name']}: teach tests/kubelet.py")
        return out, data


@dataclass
class Kubelet:
    """Runs a Pod: init containers, the main container with its probes, deletion."""
    pod: Pod
    image: Image
    rootfs: Path
    workdir: Path  # volumes live under it
    claims: dict[str, Path] = field(default_factory=dict)  # PVC claimName -> folder
    main: str = "server"

    def __post_init__(self) -> None:
        self.volumes: dict[str, Path] = {}
        for v in self.pod.spec.get("volumes", []):
            if "emptyDir" in v:
                self.volumes[v["name"]] = self.workdir / "volumes" / v["name"]
                self.volumes[v["name"]].mkdir(parents=True)
            elif "persistentVolumeClaim" in v:
                self.volumes[v["name"]] = self.claims[v["persistentVolumeClaim"]["claimName"]]
            else:
                raise NotImplementedError(f"volume {v['name']}: {sorted(v)}")
        c = self.pod.container(self.main)
        self.ports = {p["containerPort"]: free_port() for p in c.get("ports", [])}
        self.named_ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        self.events: list[tuple[float, str]] = []  # (monotonic time, what happened)
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready = False
        self.kills: list[str] = []
        self.probes: dict[str, ProbeWorker] = {}
        self.sigterm_sent = threading.Event()
        self.log = self.workdir / "server.log"

    # -- the container's view of paths, ports and environment ------------------------------------

    def host_path(self, c: dict, path: str) -> str:
        """A container path as a path on this machine, through the container's mounts, else rootfs."""
        for m in sorted(c.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
            mp = m["mountPath"].rstrip("/")
            if path == mp or path.startswith(mp + "/"):
                return str(self.volumes[m["name"]]) + path[len(mp):]
        return str(self.rootfs) + path

    def _translate(self, c: dict, value: str) -> str:
        if value.startswith("/"):
            return ":".join(self.host_path(c, p) if p.startswith("/") else p for p in value.split(":"))
        return value

    def port(self, port: int | str) -> int:
        """The machine's port for a container port (number or name)."""
        return self.ports[self.named_ports.get(port, port)]

    def argv(self, c: dict) -> list[str]:
        argv = [self._translate(c, a) for a in c.get("command", []) + c.get("args", [])]
        for i, a in enumerate(argv[:-1]):
            if a == "--port":
                argv[i + 1] = str(self.ports[int(argv[i + 1])])
            elif a == "--host" and argv[i + 1] == "0.0.0.0":
                argv[i + 1] = "127.0.0.1"  # the pod's own address here; not every interface of a shared machine
        return argv

    def environ(self, c: dict) -> dict[str, str]:
        pod_env, data = self.pod.env(c)
        env = self.image.env | {"HOME": self.image.home, "HOSTNAME": self.pod.name} | pod_env
        return {k: v if k in data else self._translate(c, v) for k, v in env.items()}

    # -- life ----------------------------------------------------------------------------------------

    def _note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    def _spawn(self, c: dict, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(c), env=self.environ(c), cwd=self.host_path(c, self.image.workdir), **kw)

    def start(self) -> None:
        """Init containers to completion, then the main container and its probe workers."""
        for ic in self.pod.spec.get("initContainers", []):
            self._note(f"init {ic['name']}")
            p = self._spawn(ic, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out, _ = p.communicate(timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"Init:Error {ic['name']} exited {p.returncode}: {out}")
        c = self.pod.container(self.main)
        Path(self.host_path(c, self.image.workdir)).mkdir(parents=True, exist_ok=True)
        self.proc = self._spawn(c, stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.started_at = time.monotonic()
        self._note("container started")
        for kind in ("startup", "readiness", "liveness"):
            spec = c.get(f"{kind}Probe")
            if spec:
                get = spec["httpGet"]
                url = f"http://127.0.0.1:{self.port(get['port'])}{get['path']}"
                self.probes[kind] = ProbeWorker(kind, spec, url, self.started_at, self._on_probe)
        if "startup" not in self.probes:
            self._started()
        for w in self.probes.values():
            w.start()

    def _started(self) -> None:
        self._note("started")
        for w in self.probes.values():
            w.container_started = True
        if "readiness" in self.probes:
            self.probes["readiness"].trigger()
        else:
            self.ready = True

    def _on_probe(self, worker: ProbeWorker, result: Result) -> None:
        self._note(f"{worker.kind} {result.value}")
        if worker.kind == "startup" and result == Result.SUCCESS and not worker.deleting:
            self._started()
        elif worker.kind == "readiness":
            self.ready = result == Result.SUCCESS
        elif result == Result.FAILURE and worker.kind in ("liveness", "startup"):
            self.kills.append(worker.kind)
            self.proc.kill()

    def delete(self, prestop_started: threading.Event | None = None) -> int:
        """Pod deletion: probes as the kubelet keeps them, preStop, STOPSIGNAL, SIGKILL at the
        end of the grace period. Returns the container's exit status."""
        grace = self.pod.spec.get("terminationGracePeriodSeconds", 30)
        t0 = time.monotonic()
        self._note("deletion")
        for w in self.probes.values():
            w.deleting = True
        c = self.pod.container(self.main)
        hook = c.get("lifecycle", {}).get("preStop", {}).get("exec")
        if hook:
            self._note("preStop")
            if prestop_started:
                prestop_started.set()
            try:
                subprocess.run([self._translate(c, a) for a in hook["command"]], env=self.environ(c), timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            self._note("preStop done")
        remaining = max(2.0, grace - (time.monotonic() - t0))  # the kubelet leaves at least 2 s
        self.proc.send_signal(self.image.stop_signal)
        self._note(self.image.stop_signal.name)
        self.sigterm_sent.set()
        try:
            code = self.proc.wait(remaining)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._note("SIGKILL")
            code = self.proc.wait()
        self._note(f"exited {code}")
        for w in self.probes.values():
            w.stop()
        self.ready = False
        return code

    def wait_ready(self) -> bool:
        """Wait for Ready as long as the probes allow: the startup budget plus a readiness period."""
        startup, readiness = self.probes.get("startup"), self.probes.get("readiness")
        budget = (startup.period * startup.failure_threshold if startup else 0) + (readiness.period if readiness else 0)
        deadline = time.monotonic() + budget + 5
        while not self.ready and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        return self.ready

    def cleanup(self) -> None:
        """After a test, whatever happened: no process or probe left behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for w in self.probes.values():
            w.stop()

    def since_start(self, what: str) -> float:
        """Seconds from the container's start to the first event `what`."""
        return next(t for t, e in self.events if e == what) - self.started_at

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
