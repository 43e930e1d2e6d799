"""Rendering the Helm chart (helm/llamajit) for the chart tests, the kubelet emulation and the
Prometheus test: helm from `make tools` (.tools/bin), a matrix of values cases, and validators
(kubernetes-validate --strict for Kubernetes objects, the CRD schemas in tests/data/crds for
ServiceMonitor, ScaledObject and InferencePool, promtool for PromQL).
"""

from __future__ import annotations

import re
import subprocess
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
# The metric names the server exposes on /metrics (--metrics) that the chart's consumers read
# (the endpoint picker's config, the autoscaling rules, the Grafana dashboard), with their
# Prometheus types: the chart is checked against this list, the server against the same names
# (service.api.metrics, service.api.metrics_fleet).
SERVER_METRICS = {
    "llamacpp:prompt_tokens_total": "counter",
    "llamacpp:tokens_predicted_total": "counter",
    "llamacpp:predicted_tokens_seconds": "gauge",
    "llamacpp:requests_processing": "gauge",
    "llamacpp:requests_deferred": "gauge",
    "llamajit:num_requests_waiting": "gauge",
    "llamajit:num_requests_running": "gauge",
    "llamajit:kv_cache_usage_perc": "gauge",
    "llamajit:lora_requests_info": "gauge",  # only with --lora adapters loaded
    "llamajit:requests_rejected_total": "counter",
    "llamajit:time_to_first_token_seconds": "histogram",
    "llamajit:time_per_output_token_seconds": "histogram",
    "llamajit:e2e_request_latency_seconds": "histogram",
    "llamajit:request_queue_time_seconds": "histogram",
}


def series_names(metrics: dict[str, str] = SERVER_METRICS) -> set[str]:
    """The series a scrape holds: a histogram's as _bucket, _sum and _count."""
    return {n + suffix for n, t in metrics.items() for suffix in (("_bucket", "_sum", "_count") if t == "histogram" else ("",))}


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression (or an adapter template) reads: identifiers followed
    by a label matcher or a range."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", promql))


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


def values_file(tmp_path: Path, values: dict) -> Path:
    f = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    f.write_text(yaml.safe_dump(values))
    return f


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([tool("helm"), *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        pytest.fail(f"helm {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def render(tmp_path: Path, values: dict | None = None) -> list[dict]:
    out = helm("template", "llamajit", str(CHART), "--namespace", NS, "--values", str(values_file(tmp_path, values or {}))).stdout
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


def crd_schema(name: str, version: str = "") -> dict:
    """A CRD's openAPIV3Schema as JSON Schema, strict like `kubectl apply` (unknown fields fail).
    The file holds the schema itself, or a whole CustomResourceDefinition (then `version`'s)."""
    def strict(node):
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
        elif isinstance(node, list):
            node = [strict(v) for v in node]
        return node
    doc = yaml.safe_load((CRDS / name).read_text())
    if doc.get("kind") == "CustomResourceDefinition":
        (doc,) = [v["schema"]["openAPIV3Schema"] for v in doc["spec"]["versions"] if v["name"] == version]
    return strict(doc)


CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.v1.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.v1alpha1.yaml",
    ("inference.networking.k8s.io/v1", "InferencePool"): "inference.networking.k8s.io_inferencepools.yaml",
}


def validate(doc: dict) -> None:
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd:
        jsonschema.validate(doc, crd_schema(crd, doc["apiVersion"].rpartition("/")[2]))
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")


def promql_ok(tmp_path: Path, expr: str) -> None:
    """promtool parses expr (as a recording rule), so a broken query fails here, not in the cluster."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "llamajit:check", "expr": expr}]}]}))
    p = subprocess.run([tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True)
    assert p.returncode == 0, f"{expr}\n{p.stdout}{p.stderr}"

