"""The Helm chart (helm/llamajit), verified without a cluster.

`helm lint --strict` and `helm template` over a matrix of values; every rendered document
passes kubernetes-validate --strict (Kubernetes objects) or its CRD's schema (ServiceMonitor,
ScaledObject); template assertions on probes, API key, autoscaling, monitoring, policies.
helm and promtool come from `make tools` (scripts/fetch_tools.py) into .tools/bin.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "llamajit"
TOOLS = ROOT / ".tools" / "bin"
CRDS = Path(__file__).parent / "data" / "crds"
NS = "llm"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema set
# kubernetes-validate ships.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())

CASES = {
    "defaults": {},
    "existing_pvc": {"model": {"source": "existingClaim", "existingClaim": "gguf-models"}},
    "created_pvc": {"model": {"source": "pvc", "persistence": {"storageClassName": "fast", "accessModes": ["ReadWriteMany"]}}},
    "created_pvc_hf": {"model": {"source": "pvc", "hf": {"repo": "org/model-GGUF", "file": "model-Q4_K_M.gguf"}}},
    "hf_init": {"model": {"source": "hf", "hf": {"repo": "org/model-GGUF", "file": "model-Q4_K_M.gguf"}}},
    "hf_server": {"model": {"source": "hf", "hf": {"repo": "org/model-GGUF", "file": "model-Q4_K_M.gguf",
                                                    "initContainer": False, "tokenSecret": {"name": "hf"}}}},
    "baked_image": {"model": {"source": "image"}, "image": {"repository": "registry.example/llamajit", "tag": "0.1.0-smollm2"}},
    "existing_secret": {"apiKey": {"existingSecret": "team-llm-key", "secretKey": "token"},
                        "metrics": {"serviceMonitor": {"enabled": True}}},
    "given_key": {"apiKey": {"value": "sk-given-0123456789"}},
    "no_key": {"apiKey": {"enabled": False}, "metrics": {"serviceMonitor": {"enabled": True}}},
    "hpa": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 9, "targetInflightPerPod": 4}},
    "keda": {"keda": {"enabled": True, "authenticationRef": {"name": "prom-auth"}}, "autoscaling": {"maxReplicas": 7}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}},
    "ingress": {"ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "llm.example", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                            "tls": [{"hosts": ["llm.example"], "secretName": "llm-tls"}]}},
    "gpu": {"gpu": {"enabled": True, "count": 2, "nGpuLayers": 99}},
    "pdb_off": {"podDisruptionBudget": {"enabled": False}},
    "pdb_min_available": {"podDisruptionBudget": {"minAvailable": 1}},
    "netpol_off": {"networkPolicy": {"enabled": False}},
    "netpol_restricted": {"networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}],
                                            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}},
    "tuned": {"server": {"alias": "smol", "ctxSize": 8192, "parallel": 8, "threads": 0, "embeddings": True, "slots": False,
                         "extraArgs": ["--temp", "0.7"], "extraEnv": [{"name": "LOG", "value": "debug"}],
                         "startup": {"budgetSeconds": 901, "periodSeconds": 7}, "drain": {"timeoutSeconds": 120, "preStopSleepSeconds": 9}},
              "nodeSelector": {"pool": "cpu"}, "affinity": {"podAntiAffinity": {}}, "priorityClassName": "high"},
    "everything": {"autoscaling": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}}, "ingress": {"enabled": True},
                   "gpu": {"enabled": True}, "model": {"source": "pvc", "hf": {"repo": "org/m", "file": "m.gguf"}},
                   "networkPolicy": {"ingressFrom": [{"podSelector": {}}]}},
}


# -- helpers -----------------------------------------------------------------------------------

def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (scripts/fetch_tools.py) first")
    return str(path)


def _values_file(tmp_path: Path, values: dict) -> Path:
    f = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    f.write_text(yaml.safe_dump(values))
    return f


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([tool("helm"), *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        pytest.fail(f"helm {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def render(tmp_path: Path, values: dict | None = None) -> list[dict]:
    out = helm("template", "llamajit", str(CHART), "--namespace", NS, "--values", str(_values_file(tmp_path, values or {}))).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} documents"
    return found[0]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def server(docs: list[dict]) -> dict:
    (c,) = [c for c in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    return c


def env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def crd_schema(name: str) -> dict:
    """A CRD's openAPIV3Schema as JSON Schema, strict like `kubectl apply` (unknown fields fail)."""
    def strict(node):
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
        elif isinstance(node, list):
            node = [strict(v) for v in node]
        return node
    return strict(yaml.safe_load((CRDS / name).read_text()))


CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.v1.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.v1alpha1.yaml",
}


def validate(doc: dict) -> None:
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd:
        jsonschema.validate(doc, crd_schema(crd))
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")


# -- the matrix ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_lint_strict_and_every_document_validates(case, tmp_path):
    values = _values_file(tmp_path, CASES[case])
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
        p = helm("template", "x", str(CHART), "--values", str(_values_file(tmp_path, bad)), check=False)
        assert p.returncode != 0 and message in p.stderr, (bad, p.stderr)


@pytest.mark.parametrize("values, message", [
    ({"autoscaling": {"enabled": True}, "keda": {"enabled": True}}, "choose one"),
    ({"model": {"source": "existingClaim"}}, "model.existingClaim"),
    ({"model": {"source": "hf", "hf": {"repo": "org/m"}}}, "model.hf.file"),
    ({"autoscaling": {"enabled": True}, "metrics": {"enabled": False}}, "metrics.enabled"),
])
def test_inconsistent_values_fail_with_a_message(values, message, tmp_path):
    p = helm("template", "x", str(CHART), "--values", str(_values_file(tmp_path, values)), check=False)
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


# -- API key ---------------------------------------------------------------------------------------

def _key_ref(container: dict) -> dict:
    e = env(container)["LLAMA_API_KEY"]
    assert set(e) == {"name", "valueFrom"}, "the key must come from a Secret, never as a value"
    return e["valueFrom"]["secretKeyRef"]


def test_generated_key_lives_in_a_secret_only(tmp_path):
    docs = render(tmp_path)
    secret = one(docs, "Secret")
    ref = _key_ref(server(docs))
    assert ref == {"name": "llamajit-api-key", "key": "api-key"} == {"name": secret["metadata"]["name"], "key": "api-key"}
    key = base64.b64decode(secret["data"]["api-key"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", key)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for doc in docs:
        if doc["kind"] != "Secret":
            assert key not in json.dumps(doc) and secret["data"]["api-key"] not in json.dumps(doc), doc["kind"]
    # a fresh install draws a fresh key (upgrades reuse the stored one through `lookup`)
    assert one(render(tmp_path), "Secret")["data"]["api-key"] != secret["data"]["api-key"]
    test_pod = next(d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test")
    assert _key_ref(test_pod["spec"]["containers"][0]) == ref


def test_given_key_and_existing_secret(tmp_path):
    docs = render(tmp_path, CASES["given_key"])
    assert base64.b64decode(one(docs, "Secret")["data"]["api-key"]).decode() == "sk-given-0123456789"
    assert all("sk-given-0123456789" not in json.dumps(d) for d in docs if d["kind"] != "Secret")

    docs = render(tmp_path, CASES["existing_secret"])
    assert "Secret" not in kinds(docs)
    assert _key_ref(server(docs)) == {"name": "team-llm-key", "key": "token"}
    creds = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["authorization"]["credentials"]
    assert creds == {"name": "team-llm-key", "key": "token"}

    docs = render(tmp_path, CASES["no_key"])
    assert "Secret" not in kinds(docs) and "LLAMA_API_KEY" not in env(server(docs))
    assert "authorization" not in one(docs, "ServiceMonitor")["spec"]["endpoints"][0]


def _plural(kind: str) -> str:
    k = kind.lower()
    return k[:-1] + "ies" if k.endswith("y") else k + ("es" if k.endswith("s") else "s")


class FakeAPIServer(http.server.ThreadingHTTPServer):
    """Just enough of a Kubernetes API server for `helm template --dry-run=server`: discovery for
    the chart's kinds, and GET of the objects in `objects` (404 for the rest)."""

    KINDS = {"v1": ["Secret", "ServiceAccount", "Service", "Pod", "ConfigMap", "PersistentVolumeClaim"],
             "apps/v1": ["Deployment"], "policy/v1": ["PodDisruptionBudget"],
             "networking.k8s.io/v1": ["NetworkPolicy", "Ingress"], "autoscaling/v2": ["HorizontalPodAutoscaler"]}

    def __init__(self, objects: list[dict]):
        def resources(gv):
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": _plural(k), "singularName": k.lower(),
                 "namespaced": True, "kind": k, "verbs": ["get", "list", "create"]} for k in self.KINDS[gv]]}
        groups = [gv for gv in self.KINDS if "/" in gv]
        self.routes = {
            "/version": {"major": "1", "minor": "30", "gitVersion": "v1.30.0"},
            "/api": {"kind": "APIVersions", "versions": ["v1"]},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in groups]},
            "/api/v1": resources("v1"), **{f"/apis/{gv}": resources(gv) for gv in groups},
            **{f"/api/v1/namespaces/{NS}/secrets/{o['metadata']['name']}": o for o in objects},
        }
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = routes.get(self.path.split("?")[0])
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                     "reason": "NotFound", "code": 404}).encode())

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _render_against(tmp_path: Path, objects: list[dict]) -> dict:
    api = FakeAPIServer(objects)
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{api.server_address[1]}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": NS}}]}))
        p = subprocess.run([tool("helm"), "template", "llamajit", str(CHART), "--namespace", NS, "--dry-run=server",
                            "--disable-openapi-validation", "--show-only", "templates/secret.yaml"],
                           capture_output=True, text=True, env={"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)})
        assert p.returncode == 0, p.stderr
        return yaml.safe_load(p.stdout)
    finally:
        api.shutdown()


def test_generated_key_is_kept_across_upgrades(tmp_path):
    """With a cluster to ask (`lookup`), the chart reuses the key its Secret already holds."""
    stored = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "llamajit-api-key", "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "Helm"},
                           "annotations": {"meta.helm.sh/release-name": "llamajit", "meta.helm.sh/release-namespace": NS}},
              "data": {"api-key": base64.b64encode(b"key-from-the-first-install").decode()}}
    upgraded = _render_against(tmp_path, [stored])
    assert base64.b64decode(upgraded["data"]["api-key"]) == b"key-from-the-first-install"
    fresh = _render_against(tmp_path, [])
    assert re.fullmatch(r"[A-Za-z0-9]{48}", base64.b64decode(fresh["data"]["api-key"]).decode())


@pytest.mark.parametrize("case", list(CASES))
def test_no_container_gets_the_key_as_a_value(case, tmp_path):
    for doc in render(tmp_path, CASES[case]):
        spec = doc.get("spec", {}).get("template", {}).get("spec") or (doc["spec"] if doc["kind"] == "Pod" else None)
        for c in (spec or {}).get("containers", []) + (spec or {}).get("initContainers", []):
            for e in c.get("env", []):
                if e["name"] in ("LLAMA_API_KEY", "HF_TOKEN"):
                    assert "value" not in e, (case, c["name"], e["name"])


# -- autoscaling -----------------------------------------------------------------------------------

def promql_ok(tmp_path: Path, expr: str) -> None:
    """promtool parses expr (as a recording rule), so a broken query fails here, not in the cluster."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "llamajit:check", "expr": expr}]}]}))
    p = subprocess.run([tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True)
    assert p.returncode == 0, f"{expr}\n{p.stdout}{p.stderr}"


def test_hpa_on_inflight_requests_per_pod(tmp_path):
    docs = render(tmp_path, CASES["hpa"])
    dep, hpa = one(docs, "Deployment"), one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2" and "replicas" not in dep["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 9)
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "llamacpp_requests_inflight"}, "target": {"type": "AverageValue", "averageValue": "4"}}}]
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300 and down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert "--metrics" in server(docs)["args"]

    # the prometheus-adapter rule shipped with it serves that metric from both gauges, per pod
    (rule,) = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])["rules"]
    assert rule["name"]["as"] == "llamacpp_requests_inflight"
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    query = rule["metricsQuery"]
    assert "llamacpp:requests_processing{<<.LabelMatchers>>}" in query and "llamacpp:requests_deferred{<<.LabelMatchers>>}" in query
    # the adapter substitutes its template variables like this for a pod-level request
    promql_ok(tmp_path, query.replace("<<.LabelMatchers>>", f'namespace="{NS}",pod=~"llamajit-.*"').replace("<<.GroupBy>>", "pod"))
    promql_ok(tmp_path, rule["seriesQuery"])
    assert "replicas" in one(render(tmp_path), "Deployment")["spec"]


def test_keda_scaledobject(tmp_path):
    docs = render(tmp_path, CASES["keda"])
    dep, so = one(docs, "Deployment"), one(docs, "ScaledObject")
    assert "HorizontalPodAutoscaler" not in kinds(docs) and "replicas" not in dep["spec"]
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 7)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    (trig,) = spec["triggers"]
    assert trig["type"] == "prometheus" and trig["metricType"] == "AverageValue"
    assert trig["authenticationRef"] == {"name": "prom-auth"}
    md = trig["metadata"]
    assert md["threshold"] == "3" and md["serverAddress"].startswith("http")
    sel = f'namespace="{NS}",service="llamajit"'
    assert md["query"] == f"sum(llamacpp:requests_processing{{{sel}}}) + sum(llamacpp:requests_deferred{{{sel}}})"
    promql_ok(tmp_path, md["query"])


# -- monitoring and policies -----------------------------------------------------------------------

def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_servicemonitor_scrapes_metrics_with_the_key(tmp_path):
    docs = render(tmp_path, CASES["servicemonitor"])
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert _matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]} and ep["path"] == "/metrics"
    assert ep["authorization"] == {"type": "Bearer", "credentials": {"name": "llamajit-api-key", "key": "api-key"}}
    assert one(docs, "Secret")["metadata"]["name"] == "llamajit-api-key"
    assert "ServiceMonitor" not in kinds(render(tmp_path))


def test_pdb_toggle(tmp_path):
    docs = render(tmp_path)
    pdb = one(docs, "PodDisruptionBudget")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1 and _matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert "PodDisruptionBudget" not in kinds(render(tmp_path, CASES["pdb_off"]))
    spec = one(render(tmp_path, CASES["pdb_min_available"]), "PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == 1 and "maxUnavailable" not in spec


def test_networkpolicy_toggle_and_rules(tmp_path):
    docs = render(tmp_path)
    np_ = one(docs, "NetworkPolicy")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _matches(np_["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert np_["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np_["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    egress_ports = [p["port"] for rule in np_["spec"]["egress"] for p in rule["ports"]]
    assert egress_ports == [53, 53], "no download: DNS only"
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    assert not _matches(np_["spec"]["podSelector"]["matchLabels"], test_pod["metadata"]["labels"])
    assert not _matches(one(docs, "Service")["spec"]["selector"], test_pod["metadata"]["labels"])

    assert "NetworkPolicy" not in kinds(render(tmp_path, CASES["netpol_off"]))
    assert 443 in [p["port"] for r in one(render(tmp_path, CASES["hf_init"]), "NetworkPolicy")["spec"]["egress"] for p in r["ports"]]

    restricted = render(tmp_path, CASES["netpol_restricted"])
    api, metrics = one(restricted, "NetworkPolicy")["spec"]["ingress"]
    assert {"namespaceSelector": {"matchLabels": {"team": "apps"}}} in api["from"]
    client = {"podSelector": {"matchLabels": {"llamajit-client": "true"}}}
    assert client in api["from"]
    test_pod = next(d for d in restricted if d["kind"] == "Pod")
    assert test_pod["metadata"]["labels"]["llamajit-client"] == "true"
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


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
                   "--values", str(_values_file(tmp_path, values))).stdout
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
