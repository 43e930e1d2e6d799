"""The rendered Deployment, run as the kubelet would run it (tests/kubelet.py), on the real model.

The pod starts from the chart's own command, args, env (the API key from the rendered Secret)
and mounts (the model on a read-only PVC mount, emptyDirs for /tmp and the Numba cache, which
the numba-cache init container fills); the three probes run at their rendered timings.
The pod is not ready and not probed for liveness while it loads, becomes ready once loaded,
enforces the key, and on deletion (preStop sleep, then SIGTERM) turns unready at once, drains a
stream in flight to its last event and exits 0 within terminationGracePeriodSeconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.helm_render import NS, render
from tests.container_image import Image, build_rootfs
from tests.kubelet import Kubelet, Pod
from tests.kubelet_probe import Result
from tests.server_proc import SMOLLM2

KEY = "sk-kubelet-0123456789abcdef"
VALUES = {"apiKey": {"value": KEY}, "metrics": {"enabled": True},
          "model": {"source": "existingClaim", "existingClaim": "gguf-models"}}
LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
DRAINING = {"error": {"code": 503, "message": "Server is shutting down", "type": "unavailable_error"}}


@dataclass
class Witness:
    """Watches /health every 50 ms (not a probe: it only records what a probe would have seen)."""
    url: str
    answers: list[tuple[float, int, dict]] = field(default_factory=list)  # (monotonic, status, body)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                r = httpx.get(self.url, timeout=2)
            except httpx.TransportError:
                continue
            self.answers.append((time.monotonic(), r.status_code, r.json()))
            if r.status_code == 200:
                return


def read_stream(url: str, body: dict, headers: dict, out: list) -> None:
    """POST a streamed request; append (monotonic, event) per SSE event as it arrives."""
    with httpx.Client(timeout=300, headers=headers) as c, c.stream("POST", url, json=body) as r:
        out.append((time.monotonic(), ("status", r.status_code)))
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                out.append((time.monotonic(), ("done", None) if data == "[DONE]" else ("data", json.loads(data))))


def pv_with_model(tmp_path, name: str):
    """The PersistentVolume behind the claim: a folder holding the model under the chart's file name."""
    pv = tmp_path / "pv"
    pv.mkdir()
    (pv / name).symlink_to(SMOLLM2)
    return pv


def _files(folder) -> set[str]:
    return {str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()}


# (a checkout without a Numba cache first compiles the kernels, which takes minutes on 2 cores)
@pytest.mark.timeout(1200)
def test_pod_lifecycle_as_the_kubelet_runs_it(tmp_path):
    docs = render(tmp_path, VALUES)
    pod = Pod(docs, namespace=NS)
    c = pod.container("server")
    model_file = c["args"][c["args"].index("--model") + 1]
    rootfs = build_rootfs(tmp_path / "rootfs", model=None)
    kubelet = Kubelet(pod, Image.from_dockerfile(), rootfs, tmp_path,
                      claims={"gguf-models": pv_with_model(tmp_path, os.path.basename(model_file))})

    # what the container is given: the chart's command line, the key from the Secret, its volumes
    argv, env = kubelet.argv(c), kubelet.environ(c)
    rendered = c["command"] + c["args"]
    changed = [rendered[i - 1] for i, (a, r) in enumerate(zip(argv, rendered)) if a != r]
    assert len(argv) == len(rendered) and changed == ["--host", "--port", "--model"], changed
    assert os.path.samefile(argv[argv.index("--model") + 1], SMOLLM2)
    assert env["LLAMA_API_KEY"] == KEY and env["NUMBA_CACHE_DIR"] == str(kubelet.volumes["numba-cache"])
    assert {"--metrics", "--drain-timeout"} <= set(argv)

    base = f"http://127.0.0.1:{kubelet.port('http')}"
    witness = Witness(base + "/health")
    witness.thread.start()
    try:
        kubelet.start()
        assert kubelet.wait_ready(), f"not ready: {kubelet.events}\n{kubelet.output()[-3000:]}"
        _loading_is_not_ready(kubelet, witness)
        # liveness starts at its first tick after the startup probe passed
        liveness = kubelet.probes["liveness"]
        deadline = time.monotonic() + liveness.period + 5
        while not liveness.attempts and time.monotonic() < deadline:
            time.sleep(0.1)
        assert liveness.attempts and all((a.result, a.detail) == (Result.SUCCESS, "200") for a in liveness.attempts)
        assert kubelet.kills == []

        _key_is_enforced(base)
        _deletion_drains_a_stream(kubelet, base)
    finally:
        witness.stop.set()
        kubelet.cleanup()
    # the numba-cache init container gave the server the image's kernels (it compiles only what
    # the image lacks; a checkout whose own cache is cold makes it compile them all)
    image_cache, pod_cache = _files(rootfs / "opt/llamajit/numba-cache"), _files(kubelet.volumes["numba-cache"])
    assert image_cache and image_cache <= pod_cache
    print(f"kubelet: Numba cache: {len(image_cache)} files from the image, {len(pod_cache - image_cache)} compiled in the pod")


@pytest.mark.timeout(1200)
def test_default_values_serve_the_model_baked_into_the_image(tmp_path):
    """The chart's default model.source=image: no model volume, --model where BAKE_MODEL=1 puts it."""
    pod = Pod(render(tmp_path, {"apiKey": {"value": KEY}}), namespace=NS)
    assert "model" not in {v["name"] for v in pod.spec["volumes"]}
    kubelet = Kubelet(pod, Image.from_dockerfile(), build_rootfs(tmp_path / "rootfs", model=SMOLLM2), tmp_path)
    try:
        kubelet.start()
        assert kubelet.wait_ready(), f"not ready: {kubelet.events}\n{kubelet.output()[-3000:]}"
        with httpx.Client(base_url=f"http://127.0.0.1:{kubelet.port('http')}", timeout=60) as h:
            props = h.get("/props", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert props["model_path"] == str(tmp_path / "rootfs/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        assert kubelet.delete() == 0 and kubelet.kills == []
    finally:
        kubelet.cleanup()


def _loading_is_not_ready(kubelet: Kubelet, witness: Witness) -> None:
    startup, readiness, liveness = (kubelet.probes[k] for k in ("startup", "readiness", "liveness"))
    t0 = kubelet.started_at
    # the server listened before the model was loaded and said so (503 loading)
    loading = [(t - t0, body) for t, status, body in witness.answers if status == 503]
    first_ok = next(t - t0 for t, status, _ in witness.answers if status == 200)
    assert loading and all(body == LOADING and t < first_ok for t, body in loading), witness.answers
    # the startup probe: ticks every periodSeconds from the start, failures (refused or 503) until
    # the model was loaded, far fewer than its threshold, then one success
    *failed, passed = startup.attempts
    assert (passed.result, passed.detail) == (Result.SUCCESS, "200")
    assert all(a.result == Result.FAILURE and a.detail in ("ConnectError", "503") for a in failed)
    assert len(failed) < startup.failure_threshold
    for a in startup.attempts:
        assert abs(a.t - round(a.t / startup.period) * startup.period) < 1.0, startup.attempts
    # neither readiness nor liveness ran before that; readiness ran at once after (the kubelet's
    # manual trigger) and made the pod ready
    started, ready = kubelet.since_start("started"), kubelet.since_start("readiness success")
    assert started >= passed.t and all(a.t >= started for a in readiness.attempts + liveness.attempts)
    assert readiness.attempts[0].result == Result.SUCCESS and ready - started < readiness.period
    print(f"\nkubelet: /health 503 (loading) from {loading[0][0]:.2f} s to {first_ok:.2f} s, "
          f"startup probe attempts {[(round(a.t, 2), a.detail) for a in startup.attempts]}, started at {started:.2f} s, "
          f"ready at {ready:.2f} s")


def _key_is_enforced(base: str) -> None:
    """401 without the key, 200 with it, on the API and /metrics; /health stays public."""
    auth = {"Authorization": f"Bearer {KEY}"}
    chat = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, "temperature": 0}
    with httpx.Client(base_url=base, timeout=120) as h:
        assert h.get("/health").json() == {"status": "ok"}
        for method, path, body in (("POST", "/v1/chat/completions", chat), ("GET", "/props", None), ("GET", "/metrics", None)):
            denied = h.request(method, path, json=body)
            assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error", path
            wrong = h.request(method, path, json=body, headers={"Authorization": "Bearer not-the-key"})
            assert wrong.status_code == 401, path
            ok = h.request(method, path, json=body, headers=auth)
            assert ok.status_code == 200, (path, ok.text)
            if path == "/metrics":
                assert "llamacpp:requests_processing" in ok.text and "llamacpp:requests_deferred" in ok.text


def _deletion_drains_a_stream(kubelet: Kubelet, base: str) -> None:
    pod_spec = kubelet.pod.spec
    grace = pod_spec["terminationGracePeriodSeconds"]
    prestop = float(kubelet.pod.container("server")["lifecycle"]["preStop"]["exec"]["command"][1])
    # The stream starts with the preStop sleep and generates until about 4 s past its end, however
    # fast a machine shared with other work runs (t_max_predict_ms counts from the first token and
    # needs a newline, which a list brings at once); n_predict is out of reach (the slot holds
    # ctx-size / parallel = 1024 tokens). A short raw prompt keeps prompt processing short.
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"prompt": "A numbered list of animals:\n1.", "n_predict": 900, "ignore_eos": True, "temperature": 0,
            "t_max_predict_ms": (prestop + 4) * 1000, "stream": True}
    events: list = []
    prestop_started, result = threading.Event(), {}
    deleter = threading.Thread(target=lambda: result.update(code=kubelet.delete(prestop_started)))
    deleter.start()
    # a client still routed to the pod while preStop sleeps (endpoints update lazily)
    assert prestop_started.wait(10)
    streamer = threading.Thread(target=read_stream, args=(base + "/completion", body, auth, events))
    streamer.start()
    assert kubelet.sigterm_sent.wait(prestop + 10)
    t_term = next(t for t, e in kubelet.events if e == kubelet.image.stop_signal.name)
    # the handler runs on the main thread between two engine steps: /health turns within moments
    with httpx.Client(base_url=base, timeout=5, headers=auth) as h:
        while (health := h.get("/health")).status_code == 200 and time.monotonic() - t_term < 2:
            time.sleep(0.01)
        unready_after = time.monotonic() - t_term
        late = h.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    in_flight = [e for t, e in events if t <= t_term]
    deleter.join(grace + 10)
    streamer.join(60)

    assert (health.status_code, health.json()) == (503, DRAINING) and unready_after < 1.0, unready_after
    assert (late.status_code, late.json()["error"]["type"]) == (503, "unavailable_error")
    # the stream was admitted before the drain began (a request after it gets 503, as `late` did)
    # and was still generating: its last events, the final one included, came after the signal
    assert events[0][1] == ("status", 200) and not any(e[0] == "data" and e[1]["stop"] for e in in_flight), in_flight
    datas = [(t, ev[1]) for t, ev in events if ev[0] == "data"]
    assert all(not d["stop"] for _, d in datas[:-1]) and datas[-1][1]["stop"] is True
    final = datas[-1][1]
    n = final["tokens_predicted"]
    assert final["stop_type"] == "limit" and n >= len(datas) - 1  # (a token may wait for the next to complete a character)
    assert len([d for t, d in datas if t > t_term]) >= 2, "no token generated after the signal"
    assert result["code"] == 0 and "SIGKILL" not in [e for _, e in kubelet.events]
    t_delete = next(t for t, e in kubelet.events if e == "deletion")
    t_exit = next(t for t, e in kubelet.events if e.startswith("exited"))
    assert t_exit - t_delete <= grace
    assert kubelet.since_start("preStop done") - kubelet.since_start("preStop") >= prestop
    # readiness only saw failures once the server was told to stop; liveness stopped probing
    readiness, liveness = kubelet.probes["readiness"], kubelet.probes["liveness"]
    after = [a for a in readiness.attempts if a.t > t_term - kubelet.started_at]
    assert all(a.result == Result.FAILURE for a in after) and not kubelet.ready
    # (a probe already past its check when deletion began may still go out: 0.5 s of slack)
    assert all(a.t < kubelet.since_start("deletion") + 0.5 for a in liveness.attempts) and kubelet.kills == []
    print(f"kubelet: deletion: preStop {prestop:.0f} s, {kubelet.image.stop_signal.name} with "
          f"{len([e for e in in_flight if e[0] == 'data'])} of {n} tokens streamed, /health 503 after "
          f"{unready_after * 1000:.0f} ms, exit 0 after {t_exit - t_delete:.2f} s (grace {grace} s), stream ended {events[-1][0] - t_term:.2f} s after SIGTERM")
