"""Plain manifests (k8s/) and the container image (Dockerfile), verified without a cluster or Docker.

- k8s/base is exactly what scripts/render_k8s.py makes of the chart's default rendering;
- each overlay, built by kustomize (`kubectl kustomize` from .tools/bin), equals the chart
  rendered with the overlay's chart-values.yaml, and passes kubernetes-validate --strict;
- the Dockerfile passes hadolint, agrees with the chart (user, command, paths, port) and with
  .dockerignore, and its precompile step runs against the real model: the Numba cache it writes
  under the image's pinned CPU target is reused after being copied elsewhere, as the chart's
  numba-cache init container does, and the server's own start (its warmup) on that copy
  compiles nothing.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests import image_cache
from tests.helm_render import CHART, ROOT, tool, validate

BASE = ROOT / "k8s" / "base"
OVERLAYS = sorted(p.name for p in (ROOT / "k8s" / "overlays").iterdir() if p.is_dir())
DOCKERFILE, MODEL = image_cache.DOCKERFILE, image_cache.MODEL


def by_name(docs) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


def render_k8s(*args: str) -> str:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "render_k8s.py"), *args],
                          check=True, capture_output=True, text=True).stdout


def kustomize(path: Path) -> list[dict]:
    out = subprocess.run([tool("kubectl"), "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    return list(yaml.safe_load_all(out))


# -- k8s/ ------------------------------------------------------------------------------------------

def test_base_is_regenerated_identically(tmp_path):
    render_k8s("--out", str(tmp_path))
    cmp = filecmp.dircmp(BASE, tmp_path)
    assert not (cmp.left_only or cmp.right_only or cmp.diff_files), (
        f"k8s/base is stale: run `python scripts/render_k8s.py` (differs: {cmp.diff_files}, "
        f"only committed: {cmp.left_only}, only regenerated: {cmp.right_only})")
    assert cmp.same_files


def test_base_is_the_chart_minus_secret_and_helm_labels():
    chart = subprocess.run([tool("helm"), "template", "llamajit", str(CHART), "--skip-tests"],
                           check=True, capture_output=True, text=True).stdout
    chart_docs = by_name(yaml.safe_load_all(chart))
    base = by_name(kustomize(BASE))
    assert set(chart_docs) - set(base) == {("Secret", "llamajit-api-key")} and set(base) <= set(chart_docs)
    for key, doc in base.items():
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "kustomize" and "helm.sh/chart" not in labels
        assert _unlabelled(doc) == _unlabelled(chart_docs[key]), key


def _unlabelled(doc: dict) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(doc))
    doc["metadata"].pop("labels", None)
    if "template" in doc.get("spec", {}):
        doc["spec"]["template"]["metadata"].pop("labels", None)
    return doc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_equals_chart_with_its_values(overlay):
    path = ROOT / "k8s" / "overlays" / overlay
    built = by_name(kustomize(path))
    chart = by_name(yaml.safe_load_all(render_k8s("--values", str(path / "chart-values.yaml"), "--stdout")))
    assert set(built) == set(chart)
    for key in built:
        assert built[key] == chart[key], f"{overlay}: {key} differs from the chart's rendering"
    base = by_name(kustomize(BASE))
    assert any(built[k] != base.get(k) for k in built), "an overlay that changes nothing"  # or adds objects (router's PVC)
    for doc in built.values():
        validate(doc)


def test_overlays_cover_cpu_gpu_router_and_inferencepool():
    assert OVERLAYS == ["cpu", "gpu", "inferencepool", "router"]
    gpu = by_name(kustomize(ROOT / "k8s" / "overlays" / "gpu"))[("Deployment", "llamajit")]
    (c,) = [c for c in gpu["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" and c["args"][-2:] == ["--n-gpu-layers", "all"]

    # router: no model on the command line (llama-server's router mode), the models PVC at /models
    router = by_name(kustomize(ROOT / "k8s" / "overlays" / "router"))
    pod = router[("Deployment", "llamajit")]["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "server"]
    assert "--model" not in c["args"] and "--hf-repo" not in c["args"]
    assert c["args"][4:8] == ["--models-dir", "/models", "--models-max", "4"]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    claim = next(v for v in pod["volumes"] if v["name"] == "model")["persistentVolumeClaim"]["claimName"]
    assert router[("PersistentVolumeClaim", claim)]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"

    # inference pool: the pool selects the server pods (no key: the picker scrapes /metrics without one)
    pool = by_name(kustomize(ROOT / "k8s" / "overlays" / "inferencepool"))
    spec = pool[("InferencePool", "llamajit")]["spec"]
    server = pool[("Deployment", "llamajit")]["spec"]["template"]
    assert all(server["metadata"]["labels"][k] == v for k, v in spec["selector"]["matchLabels"].items())
    assert server["metadata"]["labels"]["inference.networking.k8s.io/engine-type"] == "llamajit"
    assert "LLAMA_API_KEY" not in {e["name"] for e in server["spec"]["containers"][0]["env"]}
    assert ("Service", spec["endpointPickerRef"]["name"]) in pool and ("Deployment", "llamajit-epp") in pool


# -- Dockerfile ----------------------------------------------------------------------------------------

def test_dockerfile_lints_clean():
    p = subprocess.run([tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr


def _instr(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, re.M)


def test_dockerfile_agrees_with_chart_and_dockerignore():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    user, group = _instr("USER")[-1].split(":")
    assert (int(user), int(group)) == (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"])
    assert _instr("ENTRYPOINT")[-1] == '["llama-server"]'  # the Deployment's command
    assert _instr("EXPOSE")[-1] == str(values["server"]["port"])
    model = f'{values["model"]["mountPath"]}/{values["model"]["file"]}'
    assert _instr("CMD")[-1] == f'["--model", "{model}"]'
    assert f"NUMBA_CACHE_DIR={values['server']['numbaCache']['imagePath']}" in DOCKERFILE
    assert "fetch_models.py smollm2" in DOCKERFILE and values["model"]["file"] in DOCKERFILE

    # .dockerignore is an allowlist: everything COPY takes from the context is let in
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*"
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    for line in _instr("COPY"):
        if line.startswith("--from"):
            continue
        for src in line.split()[:-1]:
            assert any(src == a or src.startswith(a + "/") for a in allowed), f"COPY {src} is ignored by .dockerignore"
    for heavy in ("models", ".venv", ".tools", "tests", ".git"):
        assert not any(heavy == a or heavy.startswith(a + "/") for a in allowed)


def _cache_state(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*") if p.is_file()}


@pytest.mark.timeout(1200)
def test_precompiled_cache_is_reused_after_copying(tmp_path, request):
    """The Dockerfile's precompile step, run with the image's environment: the second run, on a copy
    of the cache (as the numba-cache init container makes), compiles nothing new, and neither does
    the server's own start (its warmup) on that copy."""
    first_run = image_cache.take(tmp_path)  # started at session start by tests/conftest.py, if it ran
    try:
        rc, first = first_run.result()
    finally:
        first_run.stop()
    if not first_run.cache.is_relative_to(tmp_path):  # the background run's own temporary directory
        request.addfinalizer(lambda: shutil.rmtree(first_run.cache.parent, ignore_errors=True))
    assert rc == 0 and "precompiled the kernels" in first, first[-3000:]
    image, pod_cache = first_run.cache, tmp_path / "pod"
    before = _cache_state(image)
    assert any(k.endswith(".nbc") for k in before) and f"data saved to '{image}/" in first

    def run(cache: Path) -> str:
        p = subprocess.run(image_cache.command(), cwd=ROOT, env=image_cache.env(cache), capture_output=True,
                           text=True, timeout=image_cache.TIMEOUT)
        assert p.returncode == 0 and "precompiled the kernels" in p.stdout, p.stdout[-3000:] + p.stderr
        return p.stdout

    shutil.copytree(image, pod_cache)
    second = run(pod_cache)
    loaded = re.findall(r"\[cache\] data loaded from '([^']+)'", second)
    assert loaded and all(p.startswith(f"{pod_cache}/") for p in loaded)
    assert "data saved to" not in second, "the copied cache was not reused: kernels were compiled again"
    assert _cache_state(pod_cache) == before

    # the server's start on the pod's copy: loading plus warmup, with the chart's default slots
    log = tmp_path / "server.log"
    port = _free_port()
    with log.open("wb") as out:
        srv = subprocess.Popen([str(ROOT / ".venv" / "bin" / "llama-server"), "--model", str(MODEL), "--host", "127.0.0.1",
                                "--port", str(port), "--ctx-size", "4096", "--parallel", "4", "--threads", "2"],
                               cwd=tmp_path, env=image_cache.env(pod_cache), stdout=out, stderr=subprocess.STDOUT)
    try:
        assert _ready(port, srv, 300), log.read_text()[-3000:]
    finally:
        srv.terminate()
        srv.wait(60)
    saved = re.findall(r"\[cache\] data saved to '([^']+)'", log.read_text())
    assert not saved, f"the server's start compiled kernels the precompile step does not: {saved}"
    assert _cache_state(pod_cache) == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(port: int, proc: subprocess.Popen, limit: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False
