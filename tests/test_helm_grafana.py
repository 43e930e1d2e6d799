"""The chart's Grafana dashboard (metrics.grafanaDashboard): a ConfigMap that Grafana's dashboard
sidecar loads (it looks for the label grafana_dashboard: "1"), holding a dashboard whose queries
read only metrics the server exports (tests/helm_render.SERVER_METRICS), parse as PromQL, and
select this release's pods; one dashboard per release.
"""

from __future__ import annotations

import json
import re

from tests.helm_render import NS, kinds, metric_names, promql_ok, render, series_names

ON = {"metrics": {"grafanaDashboard": {"enabled": True}}}


def dashboard(tmp_path, values: dict = ON) -> tuple[dict, dict]:
    (cm,) = [d for d in render(tmp_path, values) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    (text,) = cm["data"].values()
    return cm, json.loads(text)


def exprs(dash: dict) -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dash["panels"]}


def test_off_by_default_and_labelled_for_the_sidecar(tmp_path):
    assert not [d for d in render(tmp_path) if d["kind"] == "ConfigMap"]
    cm, dash = dashboard(tmp_path)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == "llamajit"
    assert list(cm["data"]) == ["llamajit.json"]
    assert dash["title"] == f"llamajit: {NS}/llamajit" and not re.search(r"__[A-Z]+__", json.dumps(dash))  # all filled in
    other = {"metrics": {"grafanaDashboard": {
        "enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "LLM"},
        "labels": {"grafana_dashboard": None, "dash": "yes"}}}}  # null drops a default label (Helm merges maps)
    cm2, _ = dashboard(tmp_path, other)
    assert cm2["metadata"]["namespace"] == "monitoring" and cm2["metadata"]["labels"]["dash"] == "yes"
    assert "grafana_dashboard" not in cm2["metadata"]["labels"] and cm2["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    assert kinds(render(tmp_path, ON)).count("ConfigMap") == 1


def test_one_dashboard_per_release(tmp_path):
    _, a = dashboard(tmp_path)
    _, b = dashboard(tmp_path, ON | {"fullnameOverride": "chat"})
    assert a["uid"] != b["uid"] and len(a["uid"]) <= 40 and re.fullmatch(r"[a-zA-Z0-9_-]+", a["uid"])
    current = {v["name"]: v.get("current", {}).get("value") for v in b["templating"]["list"]}
    assert current["namespace"] == NS and current["service"] == "chat"


def test_queries_read_the_servers_metrics_for_this_release(tmp_path):
    _, dash = dashboard(tmp_path)
    for title, queries in exprs(dash).items():
        for q in queries:
            assert metric_names(q) and metric_names(q) <= series_names(), (title, q)
            # every selector picks this release's pods (the variables default to it)
            for sel in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{([^}]*)\}", q):
                assert 'namespace="$namespace"' in sel and 'service="$service"' in sel, (title, q)
            promql_ok(tmp_path, q.replace("$__rate_interval", "1m").replace("$namespace", NS).replace("$service", "llamajit"))
    for p in dash["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} and p["targets"]
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "namespace", "service"]


def test_panels_cover_ttft_tokens_queue_and_kv(tmp_path):
    _, dash = dashboard(tmp_path)
    q = exprs(dash)
    ttft = " ".join(q["Time to first token"])
    assert "histogram_quantile(0.5," in ttft and "histogram_quantile(0.95," in ttft
    assert "llamajit:time_to_first_token_seconds_bucket" in ttft and "sum by (le)" in ttft
    assert any(x.startswith("sum(rate(llamacpp:tokens_predicted_total{") for x in q["Tokens per second"])
    assert any("llamajit:num_requests_waiting{" in x for x in q["Requests running and waiting"])
    assert any("llamajit:kv_cache_usage_perc{" in x for x in q["KV-cache use"])
    kv = next(p for p in dash["panels"] if p["title"] == "KV-cache use")
    assert kv["fieldConfig"]["defaults"]["unit"] == "percentunit" and kv["fieldConfig"]["defaults"]["max"] == 1
