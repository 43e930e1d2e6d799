"""The chart's Gateway API Inference Extension resources (inferencePool.*), from the rendered
templates: the InferencePool validated against the extension's released CRD schema
(tests/data/crds), the endpoint picker's Deployment, Service, RBAC and ConfigMap validated as
Kubernetes objects, and the wiring between them: the pool selects exactly the server pods on
their container port, its endpointPickerRef names the picker's Service and port, the picker
watches this pool, and its EndpointPickerConfig reads the metric names the server exposes
(tests/helm_render.SERVER_METRICS) for the engine type the pods are labelled with.
"""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from tests.helm_render import CHART, NS, SERVER_METRICS, crd_schema, helm, kinds, render, validate, values_file

POOL = {"inferencePool": {"enabled": True}, "apiKey": {"enabled": False}}
CASES = {
    "pool": POOL,
    "pool_lora": POOL | {"server": {"extraArgs": ["--lora", "/models/adapter.gguf"], "maxQueue": 4}},
    "pool_tuned": POOL | {"fullnameOverride": "chat", "server": {"port": 9000},
                          "inferencePool": {"enabled": True, "failureMode": "FailClose", "endpointPicker": {
                              "image": {"tag": "v1.5.1"}, "weights": {"queue": 1, "kvCache": 1, "prefixCache": 5},
                              "extraArgs": ["--v=3"], "nodeSelector": {"pool": "system"}}}},
    "pool_restricted": POOL | {"networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"gw": "yes"}}}]}},
}
ENGINE_LABEL = "inference.networking.k8s.io/engine-type"  # the picker's default engineLabelKey
# Plugin types of the picker release the chart pins (inferencePool.endpointPicker.image.tag).
EPP_PLUGIN_TYPES = {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer", "metrics-data-source",
                    "core-metrics-extractor"}


def named(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def parts(docs: list[dict]) -> dict:
    """The pool and what it refers to, found by the names the documents give each other."""
    pool = next(d for d in docs if d["kind"] == "InferencePool")
    ref = pool["spec"]["endpointPickerRef"]
    svc = named(docs, "Service", ref["name"])
    deps = [d for d in docs if d["kind"] == "Deployment"]
    (epp,) = [d for d in deps if _matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
    (srv,) = [d for d in deps if d is not epp]
    return {"pool": pool, "ref": ref, "svc": svc, "epp": epp, "server": srv}


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _container(dep: dict, name: str) -> dict:
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return c


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("case", CASES)
def test_lint_strict_and_every_document_validates(case, tmp_path):
    lint = helm("lint", "--strict", str(CHART), "--namespace", NS, "--values", str(values_file(tmp_path, CASES[case])))
    assert "0 chart(s) failed" in lint.stdout
    docs = render(tmp_path, CASES[case])
    assert {"InferencePool", "Role", "RoleBinding", "ConfigMap"} <= set(kinds(docs)) and kinds(docs).count("Deployment") == 2
    for doc in docs:
        validate(doc)  # the InferencePool against the CRD's v1 schema, the rest as Kubernetes objects


def test_pool_schema_is_live_and_its_cel_rules_hold(tmp_path):
    """The vendored schema rejects what the API server would; the CRD's CEL rules, which
    jsonschema does not run, are checked here."""
    pool = parts(render(tmp_path, POOL))["pool"]
    schema = crd_schema("inference.networking.k8s.io_inferencepools.yaml", "v1")
    for broken in ({"targetPorts": []}, {"selector": {}}, {"appProtocol": "grpc"},
                   {"endpointPickerRef": {"port": {"number": 9002}}}, {"targetPort": [{"number": 8080}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(pool | {"spec": pool["spec"] | broken}, schema)
    spec = pool["spec"]
    ref = spec["endpointPickerRef"]
    assert ref.get("kind", "Service") != "Service" or "port" in ref  # port is required when kind is Service
    numbers = [p["number"] for p in spec["targetPorts"]]
    assert len(numbers) == len(set(numbers))  # port number must be unique
    # required by the v1.5.0 CRD (the picker's release), optional since v1.6.0
    assert ref["name"]


@pytest.mark.parametrize("case", ["pool", "pool_tuned"])
def test_pool_selects_the_server_pods_on_their_port(case, tmp_path):
    docs = render(tmp_path, CASES[case])
    p = parts(docs)
    selector = p["pool"]["spec"]["selector"]["matchLabels"]
    assert _matches(selector, p["server"]["spec"]["template"]["metadata"]["labels"])
    assert not _matches(selector, p["epp"]["spec"]["template"]["metadata"]["labels"])
    test_pod = next(d for d in docs if d["kind"] == "Pod")  # the helm test pod is no endpoint
    assert not _matches(selector, test_pod["metadata"]["labels"])
    http = next(port for port in _container(p["server"], "server")["ports"] if port["name"] == "http")
    assert p["pool"]["spec"]["targetPorts"] == [{"number": http["containerPort"]}]
    assert _flag(_container(p["server"], "server")["args"], "--port") == str(http["containerPort"])
    assert p["pool"]["spec"]["appProtocol"] == "http"
    assert p["pool"]["metadata"]["name"] == named(docs, "Service", p["pool"]["metadata"]["name"])["metadata"]["name"]


@pytest.mark.parametrize("case", ["pool", "pool_tuned"])
def test_endpoint_picker_ref_reaches_the_picker(case, tmp_path):
    docs = render(tmp_path, CASES[case])
    p = parts(docs)
    ref, svc, epp = p["ref"], p["svc"], _container(p["epp"], "epp")
    assert ref["kind"] == "Service" and ref["failureMode"] == CASES[case]["inferencePool"].get("failureMode", "FailOpen")
    (svc_port,) = [sp for sp in svc["spec"]["ports"] if sp["port"] == ref["port"]["number"]]
    (cport,) = [cp for cp in epp["ports"] if cp["name"] == svc_port["targetPort"]]
    assert cport["containerPort"] == int(_flag(epp["args"], "--grpc-port"))
    health = int(_flag(epp["args"], "--grpc-health-port"))
    assert epp["livenessProbe"]["grpc"]["port"] == epp["readinessProbe"]["grpc"]["port"] == health
    # the picker's health service names (a name it does not know answers SERVICE_UNKNOWN)
    assert (epp["livenessProbe"]["grpc"]["service"], epp["readinessProbe"]["grpc"]["service"]) == ("liveness", "readiness")
    # it watches this pool
    pool = p["pool"]
    assert _flag(epp["args"], "--pool-name") == pool["metadata"]["name"]
    assert _flag(epp["args"], "--pool-namespace") == NS
    assert _flag(epp["args"], "--pool-group") == pool["apiVersion"].split("/")[0]
    assert p["epp"]["spec"]["replicas"] == 1 and p["epp"]["spec"]["strategy"]["type"] == "Recreate"


def test_picker_rbac_lets_it_watch_pool_and_pods(tmp_path):
    docs = render(tmp_path, POOL)
    p = parts(docs)
    pod = p["epp"]["spec"]["template"]["spec"]
    sa = named(docs, "ServiceAccount", pod["serviceAccountName"])
    assert sa.get("automountServiceAccountToken", True) and pod.get("automountServiceAccountToken", True)
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NS}]
    role = named(docs, "Role", binding["roleRef"]["name"])
    granted = {(g, r) for rule in role["rules"] if {"get", "watch", "list"} <= set(rule["verbs"])
               for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("", "pods"), ("inference.networking.k8s.io", "inferencepools")} <= granted
    assert all(set(rule["verbs"]) <= {"get", "watch", "list"} for rule in role["rules"]), "read-only"
    assert "ClusterRole" not in kinds(docs)


def _epp_config(docs: list[dict]) -> dict:
    p = parts(docs)
    epp, pod = _container(p["epp"], "epp"), p["epp"]["spec"]["template"]["spec"]
    path = _flag(epp["args"], "--config-file")
    (mount,) = [m for m in epp["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    cm = named(docs, "ConfigMap", vol["configMap"]["name"])
    return yaml.safe_load(cm["data"][path[len(mount["mountPath"]) + 1:]])


@pytest.mark.parametrize("case, lora", [("pool", False), ("pool_lora", True)])
def test_picker_reads_the_metrics_the_server_exposes(case, lora, tmp_path):
    docs = render(tmp_path, CASES[case])
    cfg = _epp_config(docs)
    assert (cfg["apiVersion"], cfg["kind"]) == ("inference.networking.x-k8s.io/v1alpha1", "EndpointPickerConfig")
    plugins = {pl.get("name", pl["type"]): pl for pl in cfg["plugins"]}
    assert {pl["type"] for pl in plugins.values()} <= EPP_PLUGIN_TYPES
    refs = [pl["pluginRef"] for prof in cfg["schedulingProfiles"] for pl in prof["plugins"]]
    refs += [s["pluginRef"] for s in cfg["dataLayer"]["sources"]]
    refs += [e["pluginRef"] for s in cfg["dataLayer"]["sources"] for e in s["extractors"]]
    assert set(refs) <= set(plugins), "a pluginRef that names no plugin"
    source = plugins["metrics-data-source"]["parameters"]
    assert (source["scheme"], source["path"]) == ("http", "/metrics")

    extractor = plugins["core-metrics-extractor"]["parameters"]
    engines = {e["name"]: e for e in extractor["engineConfigs"]}
    pod_labels = parts(docs)["server"]["spec"]["template"]["metadata"]["labels"]
    engine = engines[pod_labels[extractor.get("engineLabelKey", ENGINE_LABEL)]]
    assert extractor["defaultEngine"] in engines and engine["name"] == extractor["defaultEngine"]
    gauges = {n for n, t in SERVER_METRICS.items() if t == "gauge" and n.startswith("llamajit:")}
    for spec in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec"):
        assert engine[spec] in gauges, (spec, engine[spec])
    assert (engine["queuedRequestsSpec"], engine["runningRequestsSpec"], engine["kvUsageSpec"]) == (
        "llamajit:num_requests_waiting", "llamajit:num_requests_running", "llamajit:kv_cache_usage_perc")
    assert engine["loraSpec"] == ("llamajit:lora_requests_info" if lora else "") and engine["cacheInfoSpec"] == ""
    assert ("--metrics" in _container(parts(docs)["server"], "server")["args"])


def test_config_change_restarts_the_picker(tmp_path):
    def checksum(values):
        return parts(render(tmp_path, values))["epp"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum(POOL) != checksum(CASES["pool_lora"]) and checksum(POOL) == checksum(POOL)


def test_picker_pod_is_locked_down(tmp_path):
    p = parts(render(tmp_path, CASES["pool_tuned"]))
    pod = p["epp"]["spec"]["template"]["spec"]
    c = _container(p["epp"], "epp")
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"] and c["securityContext"]["allowPrivilegeEscalation"] is False
    assert "memory" in c["resources"]["limits"] and c["image"].endswith(":v1.5.1") and "--v=3" in c["args"]
    assert pod["nodeSelector"] == {"pool": "system"}


def test_engine_label_on_server_pods_only_outside_router_mode(tmp_path):
    labels = parts(render(tmp_path, POOL))["server"]["spec"]["template"]["metadata"]["labels"]
    assert labels[ENGINE_LABEL] == "llamajit"
    (router,) = [d for d in render(tmp_path, {"router": {"enabled": True}}) if d["kind"] == "Deployment"]
    assert ENGINE_LABEL not in router["spec"]["template"]["metadata"]["labels"]  # its /metrics is per model
    (default,) = [d for d in render(tmp_path) if d["kind"] == "Deployment"]
    assert default["spec"]["template"]["metadata"]["labels"][ENGINE_LABEL] == "llamajit"
    assert ENGINE_LABEL not in default["spec"]["selector"]["matchLabels"]  # (selectors are immutable)
    assert not {"InferencePool", "Role"} & set(kinds(render(tmp_path)))


def test_restricted_network_policy_admits_the_picker(tmp_path):
    docs = render(tmp_path, CASES["pool_restricted"])
    p = parts(docs)
    (np_,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    epp_labels = p["epp"]["spec"]["template"]["metadata"]["labels"]
    port = _container(p["server"], "server")["ports"][0]["containerPort"]
    assert any(_matches(src["podSelector"]["matchLabels"], epp_labels) and {"port": port, "protocol": "TCP"} in rule["ports"]
               for rule in np_["spec"]["ingress"] for src in rule["from"] if "podSelector" in src)


@pytest.mark.parametrize("values, message", [
    ({"inferencePool": {"enabled": True}}, "apiKey.enabled=false"),
    (POOL | {"metrics": {"enabled": False}}, "metrics.enabled"),
    (POOL | {"router": {"enabled": True}}, "router mode"),
])
def test_what_the_picker_cannot_work_with_fails_the_render(values, message, tmp_path):
    p = helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, values)), check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_max_queue_value_is_the_server_flag(tmp_path):
    from service.args import parse_args

    args = _container(parts(render(tmp_path, CASES["pool_lora"]))["server"], "server")["args"]
    assert _flag(args, "--max-queue") == "4"
    assert parse_args(args, {}).max_queue == 4
    (default,) = [d for d in render(tmp_path) if d["kind"] == "Deployment"]
    assert "--max-queue" not in _container(default, "server")["args"]  # 0: no bound, the server's default
