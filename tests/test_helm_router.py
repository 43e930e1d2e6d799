"""The Helm chart in router mode (router.*): llama-server started without a model, serving every
model of --models-dir, one server process per model.

Rendered and validated like the rest of the chart (helm lint --strict, kubernetes-validate
--strict); the rendered command line is parsed by llamajit's own argument parser and the
rendered preset by the router's own reader, so a chart that passes here starts a router; and
the rendered pod is run by the kubelet emulation (tests/kubelet.py) on the real model: ready at
once, /models lists the volume's models, a request naming one loads it, /metrics needs ?model=.
Router off must render exactly what the chart rendered before the router existed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helm_render import CHART, NS, helm, kinds, one, render, server, values_file, validate

ROUTER = {"router": {"enabled": True}, "model": {"source": "existingClaim", "existingClaim": "gguf-models"}}
PRESET = "[*]\nctx-size = 2048\n\n[SmolLM2-135M-Instruct.Q4_1]\nload-on-startup = true\n"
CASES = {
    "router_image": {"router": {"enabled": True}},
    "router_claim": ROUTER,
    "router_pvc_hf": {"router": {"enabled": True, "modelsDir": "/data/models"},
                      "model": {"source": "pvc", "hf": {"repo": "org/model-GGUF", "file": "model-Q4_K_M.gguf"}}},
    "router_preset": ROUTER | {"router": {"enabled": True, "modelsMax": 0, "autoload": False, "preset": PRESET},
                               "podAnnotations": {"team": "llm"}},
    "router_gpu": ROUTER | {"gpu": {"enabled": True}},
}


def args_of(values: dict, tmp_path: Path) -> list[str]:
    return server(render(tmp_path, values))["args"]


def parsed(args: list[str]):
    """The rendered args as llama-server (service.args) reads them; env empty, as in the pod."""
    from service.args import parse_args

    return parse_args(args, {})


@pytest.mark.parametrize("case", CASES)
def test_lint_strict_and_every_document_validates(case, tmp_path):
    lint = helm("lint", "--strict", str(CHART), "--namespace", NS, "--values", str(values_file(tmp_path, CASES[case])))
    assert "0 chart(s) failed" in lint.stdout
    for doc in render(tmp_path, CASES[case]):
        validate(doc)


def test_router_off_renders_as_before(tmp_path):
    """router.enabled=false: whatever else router.* says, the single-model rendering, byte for byte."""
    fixed = {"apiKey": {"value": "sk-fixed-0123456789"}}  # the generated key differs per render
    plain = helm("template", "llamajit", str(CHART), "-n", NS, "-f", str(values_file(tmp_path, fixed))).stdout
    off = fixed | {"router": {"enabled": False, "modelsDir": "/elsewhere", "modelsMax": 9, "autoload": False,
                              "preset": PRESET}}
    assert helm("template", "llamajit", str(CHART), "-n", NS, "-f", str(values_file(tmp_path, off))).stdout == plain
    (dep,) = [d for d in yaml.safe_load_all(plain) if d and d["kind"] == "Deployment"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert not any(a.startswith("--models-") for a in args)
    assert parsed(args).model == "/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_router_args_start_a_router(tmp_path):
    docs = render(tmp_path, ROUTER | {"server": {"ctxSize": 8192}})
    c = server(docs)
    args = c["args"]
    assert args[args.index("--models-dir") + 1] == "/models" and args[args.index("--models-max") + 1] == "4"
    assert not {"--model", "--hf-repo", "--hf-file", "--alias", "--no-models-autoload", "--models-preset"} & set(args)
    # the server.* flags stay: the router hands them to every model's server
    assert args[args.index("--ctx-size") + 1] == "8192" and {"--metrics", "--drain-timeout"} <= set(args)
    a = parsed(args)
    assert a.model is None and not a.hf_repo  # service.cli: no model means router mode
    assert (a.models_dir, a.models_max, a.models_autoload, a.models_preset) == ("/models", 4, True, None)
    # the model volume is where --models-dir points, read-only; probes stay on /health
    mount = next(m for m in c["volumeMounts"] if m["name"] == "model")
    assert mount == {"name": "model", "mountPath": "/models", "readOnly": True}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "model")["persistentVolumeClaim"] == {"claimName": "gguf-models"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert "ConfigMap" not in kinds(docs) and "annotations" not in one(docs, "Deployment")["spec"]["template"]["metadata"]


def test_models_dir_moves_the_volume_and_the_download(tmp_path):
    docs = render(tmp_path, CASES["router_pvc_hf"])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    dl = next(c for c in pod["initContainers"] if c["name"] == "model-download")
    assert dl["command"][-1] == "/data/models" and {"name": "model", "mountPath": "/data/models"} in dl["volumeMounts"]
    assert {"name": "model", "mountPath": "/data/models", "readOnly": True} in server(docs)["volumeMounts"]
    assert parsed(server(docs)["args"]).models_dir == "/data/models"
    assert "--model" not in server(docs)["args"]
    # model.source=image: the folder baked into the image, no volume
    image = render(tmp_path, CASES["router_image"])
    assert "model" not in {v["name"] for v in one(image, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert parsed(server(image)["args"]).models_dir == "/models"


def test_preset_is_a_mounted_configmap(tmp_path, monkeypatch):
    docs = render(tmp_path, CASES["router_preset"])
    c, tmpl = server(docs), one(docs, "Deployment")["spec"]["template"]
    cm = one(docs, "ConfigMap")
    assert cm["data"] == {"preset.ini": PRESET}
    a = parsed(c["args"])
    assert (a.models_max, a.models_autoload) == (0, False) and "--no-models-autoload" in c["args"]
    # --models-preset names the file the ConfigMap volume puts under the mount
    vol = next(v for v in tmpl["spec"]["volumes"] if v["name"] == "router-preset")["configMap"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "router-preset")
    assert vol["name"] == cm["metadata"]["name"] and mount["readOnly"] is True
    (item,) = vol["items"]
    assert item["key"] == "preset.ini" and a.models_preset == f"{mount['mountPath']}/{item['path']}"
    # a changed preset rolls the pods; the user's annotations stay
    ann = tmpl["metadata"]["annotations"]
    assert ann["team"] == "llm" and len(ann["checksum/router-preset"]) == 64
    other = CASES["router_preset"] | {"router": {"enabled": True, "preset": PRESET + "stop-timeout = 5\n"}}
    other_ann = one(render(tmp_path, other), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert other_ann["checksum/router-preset"] != ann["checksum/router-preset"]

    # what the router makes of the rendered file, with a models folder as the volume would hold it
    from service.router import catalog

    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "no-cache"))
    models = tmp_path / "models"
    (models / "gemma").mkdir(parents=True)
    (models / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    (models / "gemma" / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"GGUF")
    (tmp_path / "preset.ini").write_text(cm["data"]["preset.ini"])
    entries = catalog.build(str(models), str(tmp_path / "preset.ini"))
    assert set(entries) == {"SmolLM2-135M-Instruct.Q4_1", "gemma"}
    smol = entries["SmolLM2-135M-Instruct.Q4_1"]
    assert smol.load_on_startup and smol.options["ctx-size"] == "2048" and not entries["gemma"].load_on_startup


@pytest.mark.parametrize("values, message", [
    ({"autoscaling": {"enabled": True}}, "autoscaling.enabled and keda.enabled are not available in router mode"),
    ({"keda": {"enabled": True}}, "autoscaling.enabled and keda.enabled are not available in router mode"),
    ({"metrics": {"serviceMonitor": {"enabled": True}}}, "metrics.serviceMonitor.enabled is not available in router mode"),
    ({"podAnnotations": {"prometheus.io/scrape": "true"}}, "podAnnotations: prometheus.io/scrape is not available"),
    ({"service": {"annotations": {"prometheus.io/scrape": "true"}}}, "service.annotations: prometheus.io/scrape"),
    ({"server": {"alias": "smol"}}, "server.alias names a single-model server's model"),
    ({"model": {"source": "hf", "hf": {"repo": "org/m", "file": "m.gguf", "initContainer": False}}}, "starts the server with -hf"),
])
def test_what_a_router_cannot_do_fails_the_render(values, message, tmp_path):
    bad = ROUTER | values
    p = helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, bad)), check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr
    # the same values without the router render (the check is the router's, not another one)
    ok = {k: v for k, v in bad.items() if k != "router"}
    assert helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, ok)), check=False).returncode == 0


@pytest.mark.parametrize("router, field", [
    ({"modelsMax": "x"}, "modelsMax"), ({"modelsMax": -1}, "modelsMax"), ({"modelsDir": "models"}, "modelsDir"),
    ({"autoload": "no"}, "autoload"), ({"preset": {"*": {}}}, "preset"), ({"enable": True}, "enable"),
])
def test_schema_rejects_bad_router_values(router, field, tmp_path):
    p = helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, {"router": router})), check=False)
    assert p.returncode != 0 and field in p.stderr, p.stderr


def test_notes(tmp_path):
    def notes(values):
        out = helm("install", "llamajit", str(CHART), "--dry-run=client", "--namespace", NS,
                   "--values", str(values_file(tmp_path, values))).stdout
        return out[out.index("NOTES:"):]
    text = notes(CASES["router_claim"])
    assert "Router mode: every model in /models" in text and "at most 4 loaded at once" in text
    assert "x router.modelsMax" in text and "/metrics?model=NAME" in text and '{"model":"NAME",' in text
    assert "Pods turn ready once the model is loaded" not in text
    assert "at most unlimited loaded" in notes(CASES["router_preset"]) and "POST /models/load" in notes(CASES["router_preset"])


# -- the rendered router pod, run ---------------------------------------------------------------------

def _descendants(pid: int) -> set[int]:
    kids = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid}
    return kids.union(*(_descendants(k) for k in kids)) if kids else set()


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.timeout(900)
def test_router_pod_as_the_kubelet_runs_it(tmp_path):
    from tests.container_image import Image, build_rootfs
    from tests.kubelet import Kubelet, Pod
    from tests.server_proc import SMOLLM2

    key = "sk-router-0123456789abcdef"
    docs = render(tmp_path, ROUTER | {"apiKey": {"value": key}})
    pod = Pod(docs, namespace=NS)
    pv = tmp_path / "pv"  # the claim: one model as a file, one as a folder
    (pv / "smol-folder").mkdir(parents=True)
    (pv / "smollm2.gguf").symlink_to(SMOLLM2)
    (pv / "smol-folder" / SMOLLM2.name).symlink_to(SMOLLM2)
    kubelet = Kubelet(pod, Image.from_dockerfile(), build_rootfs(tmp_path / "rootfs", model=None), tmp_path,
                      claims={"gguf-models": pv})
    assert kubelet.argv(pod.container("server"))[kubelet.argv(pod.container("server")).index("--models-dir") + 1] == str(pv)
    auth = {"Authorization": f"Bearer {key}"}
    children: set[int] = set()
    try:
        kubelet.start()
        assert kubelet.wait_ready(), f"not ready: {kubelet.events}\n{kubelet.output()[-3000:]}"
        with httpx.Client(base_url=f"http://127.0.0.1:{kubelet.port('http')}", timeout=300, headers=auth) as h:
            # ready with nothing loaded: /health does not wait for a model
            listing = {m["id"]: m["status"]["value"] for m in h.get("/models").json()["data"]}
            assert listing == {"smollm2": "unloaded", "smol-folder": "unloaded"}, listing
            # why the chart refuses to scrape /metrics: without ?model= it is a 400
            assert h.get("/metrics").status_code == 400
            chat = {"model": "smol-folder", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4,
                    "temperature": 0}
            r = h.post("/v1/chat/completions", json=chat)
            children = _descendants(kubelet.proc.pid)
            assert r.status_code == 200 and isinstance(r.json()["choices"][0]["message"]["content"], str), r.text
            listing = {m["id"]: m["status"]["value"] for m in h.get("/models").json()["data"]}
            assert listing == {"smollm2": "unloaded", "smol-folder": "loaded"}, listing
            metrics = h.get("/metrics", params={"model": "smol-folder"})
            assert metrics.status_code == 200 and "llamacpp:requests_processing" in metrics.text
        # `helm test`'s pod: its script against this router (it finds the router and names a model)
        test_pod = next(d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test")
        cmd = test_pod["spec"]["containers"][0]["command"]
        done = subprocess.run([sys.executable, "-c", cmd[2], f"http://127.0.0.1:{kubelet.port('http')}"],
                              env={**os.environ, "LLAMA_API_KEY": key}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "health ok; completion:" in done.stdout, done.stderr
        assert kubelet.delete() == 0 and kubelet.kills == [], kubelet.output()[-3000:]
    finally:
        children |= _descendants(kubelet.proc.pid) if kubelet.proc and kubelet.proc.poll() is None else set()
        kubelet.cleanup()
        for pid in children:  # a router killed outright leaves its models' servers (own sessions) behind
            try:
                if b"service.cli" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
