"""The Helm chart (helm/llamajit), verified without a cluster: lint and validation.

`helm lint --strict` and `helm template` over a matrix of values (tests/helm_render.CASES);
every rendered document passes kubernetes-validate --strict (Kubernetes objects) or its CRD's
schema (ServiceMonitor, ScaledObject); template assertions on the Deployment (probes, drain,
args, security), the model sources, GPU, ingress, NOTES and the `helm test` hook.
The API key is in test_helm_apikey.py, autoscaling, monitoring and policies in
test_helm_scaling.py. helm and promtool come from `make tools` into .tools/bin.
"""

from __future__ import annotations

import subprocess
import sys

import jsonschema
import pytest

# CHART, ROOT, tool and validate are imported from here by tests/test_k8s.py.
from tests.helm_render import (CASES, CHART, NS, ROOT, env, helm, kinds, one, render, server, tool,  # noqa: F401
                                values_file, validate)


# -- the matrix ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_lint_strict_and_every_document_validates(case, tmp_path):
    values = values_file(tmp_path, CASES[case])
    lint = helm("lint", "--strict", str(CHART), "--namespace", NS, "--values", str(values))
    assert "0 chart(s) failed" in lint.stdout
    docs = render(tmp_path, CASES[case])
    assert {"Deployment", "Service", "ServiceAccount"} <= set(kinds(docs))
    for doc in docs:
        validate(doc)


def test_validation_catches_a_wrong_field(tmp_path):
    """The validators are live: a misspelt field fails each of them."""
    docs = render(tmp_path, CASES["everything"] | {"keda": {"enabled": False}})
    dep = one(docs, "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    with pytest.raises(pytest.fail.Exception, match="readinesProbe"):
        validate(dep)
    sm = one(docs, "ServiceMonitor")
    sm["spec"]["endpoints"][0]["authorisation"] = sm["spec"]["endpoints"][0].pop("authorization")
    with pytest.raises(jsonschema.ValidationError):
        validate(sm)
    so = one(render(tmp_path, CASES["keda"]), "ScaledObject")
    so["spec"]["triggers"][0]["metricType"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate(so)


def test_schema_rejects_unknown_and_mistyped_values(tmp_path):
    for bad, message in (({"model": {"sourc": "hf"}}, "sourc"), ({"server": {"ctxSize": "big"}}, "ctxSize"),
                         ({"model": {"source": "s3"}}, "source"), ({"apiKey": {"enable": False}}, "enable")):
        p = helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, bad)), check=False)
        assert p.returncode != 0 and message in p.stderr, (bad, p.stderr)


@pytest.mark.parametrize("values, message", [
    ({"autoscaling": {"enabled": True}, "keda": {"enabled": True}}, "choose one"),
    ({"model": {"source": "existingClaim"}}, "model.existingClaim"),
    ({"model": {"source": "hf", "hf": {"repo": "org/m"}}}, "model.hf.file"),
    ({"autoscaling": {"enabled": True}, "metrics": {"enabled": False}}, "metrics.enabled"),
])
def test_inconsistent_values_fail_with_a_message(values, message, tmp_path):
    p = helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, values)), check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr


# -- the Deployment -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["defaults", "tuned"])
def test_probes_on_health_and_startup_budget_covers_load(case, tmp_path):
    values = CASES[case]
    c = server(render(tmp_path, values))
    startup = (values.get("server", {}).get("startup") or {})
    budget, period = startup.get("budgetSeconds", 600), startup.get("periodSeconds", 5)
    port_names = {p["name"] for p in c["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
        assert "http" in port_names
    s = c["startupProbe"]
    assert s["periodSeconds"] == period
    # the smallest threshold whose window covers the budget
    assert s["failureThreshold"] * period >= budget > (s["failureThreshold"] - 1) * period
    # liveness and readiness only start after the startup probe passed (model loaded); liveness
    # then tolerates a minute of unanswered /health before a restart.
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60


@pytest.mark.parametrize("case", ["defaults", "tuned"])
def test_grace_period_covers_prestop_and_drain(case, tmp_path):
    drain = {"timeoutSeconds": 60, "preStopSleepSeconds": 5} | CASES[case].get("server", {}).get("drain", {})
    docs = render(tmp_path, CASES[case])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = server(docs)
    args = c["args"]
    assert args[args.index("--drain-timeout") + 1] == str(drain["timeoutSeconds"])
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(drain["preStopSleepSeconds"])]
    assert pod["terminationGracePeriodSeconds"] >= drain["preStopSleepSeconds"] + drain["timeoutSeconds"] + 5


def test_args_from_values(tmp_path):
    c = server(render(tmp_path, CASES["tuned"]))
    args = c["args"]
    pairs = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--") and not args[i + 1].startswith("--")}
    assert pairs["--host"] == "0.0.0.0" and pairs["--port"] == "8080"
    assert pairs["--model"] == "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (pairs["--alias"], pairs["--ctx-size"], pairs["--parallel"]) == ("smol", "8192", "8")
    assert {"--metrics", "--embeddings", "--no-slots"} <= set(args) and "--threads" not in args
    assert args[-2:] == ["--temp", "0.7"]  # extra args last, so they override
    assert env(c)["LOG"] == {"name": "LOG", "value": "debug"}
    defaults = server(render(tmp_path))["args"]
    assert "--embeddings" not in defaults and "--no-slots" not in defaults
    assert defaults[defaults.index("--threads") + 1] == "2" and env(server(render(tmp_path)))["NUMBA_NUM_THREADS"]["value"] == "2"


@pytest.mark.parametrize("case", list(CASES))
def test_pod_is_locked_down(case, tmp_path):
    docs = render(tmp_path, CASES[case])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "memory" in c["resources"]["limits"], c["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in server(docs)["volumeMounts"]}
    # everything the server writes goes to emptyDirs
    assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/var/cache/llamajit/numba"]]
    assert env(server(docs))["NUMBA_CACHE_DIR"]["value"] == "/var/cache/llamajit/numba"
    init = {c["name"]: c for c in pod.get("initContainers", [])}
    assert init["numba-cache"]["command"] == ["cp", "-R", "/opt/llamajit/numba-cache/.", "/var/cache/llamajit/numba/"]


# -- model sources -------------------------------------------------------------------------------

def _model_volume(docs: list[dict]) -> dict | None:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    return next((v for v in pod["volumes"] if v["name"] == "model"), None)


def test_model_sources(tmp_path):
    def arg(docs, flag):
        args = server(docs)["args"]
        return args[args.index(flag) + 1] if flag in args else None

    def inits(docs):
        return {c["name"]: c for c in one(docs, "Deployment")["spec"]["template"]["spec"].get("initContainers", [])}

    baked = render(tmp_path, CASES["baked_image"])
    assert _model_volume(baked) is None and arg(baked, "--model") == "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert server(baked)["image"] == "registry.example/llamajit:0.1.0-smollm2"

    existing = render(tmp_path, CASES["existing_pvc"])
    assert _model_volume(existing)["persistentVolumeClaim"] == {"claimName": "gguf-models"}
    assert "PersistentVolumeClaim" not in kinds(existing) and "model-download" not in inits(existing)
    mount = next(m for m in server(existing)["volumeMounts"] if m["name"] == "model")
    assert mount == {"name": "model", "mountPath": "/models", "readOnly": True}

    created = render(tmp_path, CASES["created_pvc"])
    pvc = one(created, "PersistentVolumeClaim")
    assert _model_volume(created)["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "fast"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    for case, volume in (("hf_init", "emptyDir"), ("created_pvc_hf", "persistentVolumeClaim")):
        docs = render(tmp_path, CASES[case])
        dl = inits(docs)["model-download"]
        assert dl["command"][-4:] == ["org/model-GGUF", "model-Q4_K_M.gguf", "main", "/models"]
        compile(dl["command"][2], "model-download", "exec")
        assert {"name": "model", "mountPath": "/models"} in dl["volumeMounts"]
        assert volume in _model_volume(docs)
        assert arg(docs, "--model") == "/models/model-Q4_K_M.gguf" and "--hf-repo" not in server(docs)["args"]

    # the download is skipped when the volume already holds the file (a filled PVC, a restart):
    # run the init container's command with the model folder mapped to a local one
    dl = inits(render(tmp_path, CASES["created_pvc_hf"]))["model-download"]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model-Q4_K_M.gguf").write_bytes(b"GGUF" + bytes(60))
    cmd = [sys.executable, *dl["command"][1:-1], str(tmp_path / "models")]
    p = subprocess.run(cmd, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)})
    assert p.returncode == 0 and p.stdout.strip().endswith("model-Q4_K_M.gguf: 64 bytes"), p.stderr

    by_server = render(tmp_path, CASES["hf_server"])
    assert "model-download" not in inits(by_server) and "--model" not in server(by_server)["args"]
    assert (arg(by_server, "--hf-repo"), arg(by_server, "--hf-file")) == ("org/model-GGUF", "model-Q4_K_M.gguf")
    e = env(server(by_server))
    assert e["HF_HOME"]["value"] == "/models/huggingface" and e["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert next(m for m in server(by_server)["volumeMounts"] if m["name"] == "model")["readOnly"] is False


# -- GPU, ingress, NOTES, helm test ---------------------------------------------------------------------

def test_gpu_profile(tmp_path):
    docs = render(tmp_path, CASES["gpu"])
    c, pod = server(docs), one(docs, "Deployment")["spec"]["template"]["spec"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2" and c["resources"]["requests"]["cpu"] == "2"
    assert c["args"][c["args"].index("--n-gpu-layers") + 1] == "99"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert c["image"] == "llamajit:0.1.0-cuda"
    cpu = server(render(tmp_path))
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"] and "--n-gpu-layers" not in cpu["args"]


def test_ingress(tmp_path):
    docs = render(tmp_path, CASES["ingress"])
    ing = one(docs, "Ingress")["spec"]
    assert ing["ingressClassName"] == "nginx" and ing["tls"] == [{"hosts": ["llm.example"], "secretName": "llm-tls"}]
    backend = ing["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one(docs, "Service")["metadata"]["name"], "port": {"number": 8080}}
    assert "Ingress" not in kinds(render(tmp_path))


def test_notes(tmp_path):
    def notes(values):
        out = helm("install", "llamajit", str(CHART), "--dry-run=client", "--namespace", NS,
                   "--values", str(values_file(tmp_path, values))).stdout
        return out[out.index("NOTES:"):]
    text = notes({})
    assert f"http://llamajit.{NS}.svc:8080/v1" in text
    assert f"kubectl -n {NS} get secret llamajit-api-key -o jsonpath='{{.data.api-key}}'" in text
    assert "BAKE_MODEL=1" in text
    hpa = notes(CASES["hpa"])
    assert "llamacpp_requests_inflight" in hpa and "llamacpp:requests_deferred{<<.LabelMatchers>>}" in hpa
    assert "sum(llamacpp:requests_processing" in notes(CASES["keda"])


def test_helm_test_hook(tmp_path):
    docs = render(tmp_path)
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["command"][:2] == ["python", "-c"] and c["command"][-1] == "http://llamajit:8080"
    src = c["command"][2]
    compile(src, "helm-test", "exec")
    assert '"/health"' in src and '"/v1/chat/completions"' in src and "401" in src
    assert pod["spec"]["restartPolicy"] == "Never" and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "Pod" not in kinds(render(tmp_path, {"tests": {"enabled": False}}))
