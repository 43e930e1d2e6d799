"""The chart's API key: a generated or given key lives in a Secret only, reaches the pods through
secretKeyRef, honours existingSecret, and survives upgrades (`lookup` against a fake API server).
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tests.helm_render import CASES, CHART, NS, env, kinds, one, render, server, tool


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


