"""The chart's autoscaling (HPA with its prometheus-adapter rule, KEDA), ServiceMonitor,
PodDisruptionBudget and NetworkPolicy, from the rendered templates. The queries run against
a real Prometheus in test_prometheus.py.
"""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.helm_render import (CASES, CHART, NS, helm, kinds, metric_names, one, promql_ok, render, series_names, server,
                                tool, values_file)
from tests.prometheus import adapter_query


# -- autoscaling -----------------------------------------------------------------------------------


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


QUEUE_TTFT = {"autoscaling": {"enabled": True, "metrics": ["queue", "ttft"], "targetQueuePerPod": 2,
                              "targetTTFTSeconds": "1500m", "ttftWindow": "3m"}}


def test_hpa_on_queue_and_ttft(tmp_path):
    docs = render(tmp_path, QUEUE_TTFT)
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [(m["pods"]["metric"]["name"], m["pods"]["target"]) for m in hpa] == [
        ("llamajit_num_requests_waiting", {"type": "AverageValue", "averageValue": "2"}),
        ("llamajit_time_to_first_token_p90_seconds", {"type": "AverageValue", "averageValue": "1500m"})]
    rules = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])["rules"]
    # each rule serves one HPA metric, from series the server exports
    assert [r["name"]["as"] for r in rules] == [m["pods"]["metric"]["name"] for m in hpa]
    for r in rules:
        (series,) = metric_names(r["seriesQuery"])
        assert series in series_names() and re.fullmatch(r["name"]["matches"], series)
        assert metric_names(r["metricsQuery"]) <= series_names(), r["metricsQuery"]
        promql_ok(tmp_path, adapter_query(r["metricsQuery"], NS, ["llamajit-a", "llamajit-b"]))
    assert "[3m]" in rules[1]["metricsQuery"] and "histogram_quantile(0.9," in rules[1]["metricsQuery"]


def test_ttft_rule_gives_each_pod_its_p90_and_an_idle_pod_zero(tmp_path):
    """The adapter's TTFT query evaluated by promtool on two pods' series: the busy pod's first
    tokens all came in 1-2 s (p90 by linear interpolation within that bucket: 1.9 s); the idle
    one started no request in the window (its quantile is NaN, which the rule turns into 0, so
    the HPA gets a number and an idle fleet scales down)."""
    (_, rule) = yaml.safe_load(one(render(tmp_path, QUEUE_TTFT), "ConfigMap")["data"]["config.yaml"])["rules"]
    query = adapter_query(rule["metricsQuery"], NS, ["busy", "idle"])
    series = []
    for pod, per_scrape in (("busy", 1), ("idle", 0)):
        sel = f'namespace="{NS}",pod="{pod}"'
        for le, n in (("1", 0), ("2", per_scrape), ("4", per_scrape), ("+Inf", per_scrape)):
            series.append({"series": f'llamajit:time_to_first_token_seconds_bucket{{{sel},le="{le}"}}', "values": f"0+{n}x20"})
        series.append({"series": f"llamajit:num_requests_running{{{sel}}}", "values": "0x20"})
    tests = {"rule_files": [], "evaluation_interval": "15s", "tests": [{
        "interval": "15s", "input_series": series,
        "promql_expr_test": [{"expr": query, "eval_time": "4m",
                              "exp_samples": [{"labels": '{pod="busy"}', "value": 1.9}, {"labels": '{pod="idle"}', "value": 0}]}]}]}
    f = tmp_path / "ttft-test.yaml"
    f.write_text(yaml.safe_dump(tests))
    p = subprocess.run([tool("promtool"), "test", "rules", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_keda_triggers_follow_the_metrics(tmp_path):
    docs = render(tmp_path, {"keda": {"enabled": True}, "autoscaling": {"metrics": ["inflight", "ttft"]}})
    trig = one(docs, "ScaledObject")["spec"]["triggers"]
    assert [(t["metricType"], t["metadata"]["threshold"]) for t in trig] == [("AverageValue", "3"), ("Value", "2")]
    for t in trig:
        assert metric_names(t["metadata"]["query"]) <= series_names()
        promql_ok(tmp_path, t["metadata"]["query"])
    assert "histogram_quantile(0.9, sum by (le)" in trig[1]["metadata"]["query"]
    own = one(render(tmp_path, {"keda": {"enabled": True, "query": "sum(up)", "threshold": 7}}), "ScaledObject")
    assert [(t["metadata"]["query"], t["metadata"]["threshold"]) for t in own["spec"]["triggers"]] == [("sum(up)", "7")]
    p = helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, {"keda": {"enabled": True, "query": "sum(up)"}})),
             check=False)
    assert p.returncode != 0 and "keda.query needs keda.threshold" in p.stderr
    p = helm("template", "x", str(CHART), "--values", str(values_file(tmp_path, {"autoscaling": {"metrics": ["latency"]}})),
             check=False)
    assert p.returncode != 0 and "autoscaling/metrics/0" in p.stderr


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


