"""The chart's autoscaling path end to end, on a real Prometheus and two real servers.

Two `llama-server` processes (SmolLM2, --metrics, the API key, 2 slots each) stand for two pods.
Prometheus scrapes them as the rendered ServiceMonitor says (bearer token from the rendered
Secret); a second job without the token shows the scrape needs it. Under load (4 long streams
per server: 2 in slots, 2 queued), the prometheus-adapter rule shipped by the chart, evaluated
as the adapter evaluates it for the HPA, gives each pod its in-flight requests, and the HPA
formula with the chart's target recommends scaling up; once the streams are gone it recommends
minReplicas. The KEDA ScaledObject's query, evaluated the same way, agrees.
"""

from __future__ import annotations

import base64
import re
import threading
import time

import httpx
import pytest
import yaml

from tests.helm_render import NS, one, render, tool
from tests.prometheus import Prometheus, Target, adapter_query, hpa_desired, scrape_config
from tests.server_proc import ServerProcess, free_port

KEY = "sk-prometheus-0123456789abcdef"
SLOTS, STREAMS = 2, 4  # per server: 2 decoding, 2 deferred
HPA_VALUES = {"apiKey": {"value": KEY}, "autoscaling": {"enabled": True},
              "metrics": {"serviceMonitor": {"enabled": True}}}
KEDA_VALUES = {"apiKey": {"value": KEY}, "keda": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}}}
PODS = ("llamajit-7d4f9c8b6-ab12c", "llamajit-7d4f9c8b6-de34f")


class Load:
    """STREAMS long streamed completions against one server, held open until stop() closes their
    connections, which cancels them on the server (running or still queued)."""

    def __init__(self, url: str):
        self.answers: list[int] = []
        self.clients = [httpx.Client(timeout=120, headers={"Authorization": f"Bearer {KEY}"}) for _ in range(STREAMS)]
        self.threads = [threading.Thread(target=self._stream, args=(c, url, i), daemon=True)
                        for i, c in enumerate(self.clients)]
        for t in self.threads:
            t.start()

    def _stream(self, client: httpx.Client, url: str, i: int) -> None:
        body = {"prompt": f"Story number {i}:", "n_predict": 400, "ignore_eos": True, "stream": True}
        try:
            with client.stream("POST", url + "/completion", json=body) as r:
                self.answers.append(r.status_code)
                for _ in r.iter_lines():
                    pass
        except (httpx.HTTPError, RuntimeError):  # the connection closed under it by stop()
            pass

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        for t in self.threads:
            t.join(30)


def _per_pod(result: dict[tuple, float]) -> dict[str, float]:
    return {dict(k)["pod"]: v for k, v in result.items()}


@pytest.mark.timeout(240)
def test_hpa_and_keda_recommendations_from_a_real_prometheus(tmp_path):
    hpa_docs, keda_docs = render(tmp_path, HPA_VALUES), render(tmp_path, KEDA_VALUES)
    sm, hpa = one(hpa_docs, "ServiceMonitor"), one(hpa_docs, "HorizontalPodAutoscaler")["spec"]
    (rule,) = yaml.safe_load(one(hpa_docs, "ConfigMap")["data"]["config.yaml"])["rules"]
    scaled = one(keda_docs, "ScaledObject")["spec"]
    service = one(hpa_docs, "Service")["metadata"]["name"]
    secrets = [d for d in hpa_docs if d["kind"] == "Secret"]
    assert base64.b64decode(secrets[0]["data"]["api-key"]).decode() == KEY

    servers = [ServerProcess("-c", "1024", "-np", str(SLOTS), "--metrics", env={"LLAMA_API_KEY": KEY}) for _ in PODS]
    prom = None
    loads: list[Load] = []
    try:
        targets = [Target(s.url, pod) for s, pod in zip(servers, PODS)]
        jobs = scrape_config(sm, secrets, targets, tmp_path, NS, service)
        # the same targets without the token: what a ServiceMonitor without `authorization` gets
        unauthorized = {k: v for k, v in jobs[0].items() if k != "authorization"} | {"job_name": "no-token"}
        unauthorized["static_configs"] = [{**sc, "labels": sc["labels"] | {"job": "no-token"}}
                                          for sc in jobs[0]["static_configs"]]
        prom = Prometheus(tool("prometheus"), jobs + [unauthorized], tmp_path, free_port())
        for s in servers:
            s.wait_ready()
        prom.wait_ready()
        t0 = time.monotonic()
        up = prom.wait_for('up{job="%s"}' % service, lambda r: len(r) == 2 and all(v == 1 for v in r.values()))
        assert sorted(_per_pod(up)) == sorted(PODS) and set(up.values()) == {1.0}, prom.targets()
        denied = [t for t in prom.targets() if t["scrapePool"] == "no-token"]
        deadline = time.monotonic() + 10
        while not all("401" in t["lastError"] for t in denied) and time.monotonic() < deadline:  # (503 while loading)
            time.sleep(0.2)
            denied = [t for t in prom.targets() if t["scrapePool"] == "no-token"]
        assert len(denied) == 2 and all(t["health"] == "down" and "401" in t["lastError"] for t in denied), \
            [(t["health"], t["lastError"]) for t in denied]

        # prometheus-adapter's discovery: the rule's seriesQuery finds both pods, named as the HPA asks
        found = prom.series(rule["seriesQuery"])
        assert {s["pod"] for s in found} == set(PODS) and {s["namespace"] for s in found} == {NS}
        names = {re.sub(rule["name"]["matches"], rule["name"]["as"], s["__name__"]) for s in found}
        assert names == {hpa["metrics"][0]["pods"]["metric"]["name"]}
        per_pod_query = adapter_query(rule["metricsQuery"], NS, list(PODS))
        keda = scaled["triggers"][0]["metadata"]
        target = float(hpa["metrics"][0]["pods"]["target"]["averageValue"])
        bounds = (hpa["minReplicas"], hpa["maxReplicas"])

        # idle before the load: nothing in flight, the HPA wants minReplicas
        idle = _per_pod(prom.wait_for(per_pod_query, lambda r: len(r) == 2))
        assert idle == {p: 0.0 for p in PODS}

        loads = [Load(s.url) for s in servers]
        # (a request waits in the queue until the engine gives it a free slot: the split settles a
        # moment after the sum)
        processing = _per_pod(prom.wait_for('llamacpp:requests_processing{job="%s"}' % service,
                                            lambda r: sorted(r.values()) == [SLOTS] * 2, timeout=60))
        busy = _per_pod(prom.wait_for(per_pod_query, lambda r: sorted(r.values()) == [STREAMS] * 2, timeout=60))
        deferred = _per_pod(prom.query('llamacpp:requests_deferred{job="%s"}' % service))
        keda_busy = prom.query(keda["query"])
        assert busy == {p: STREAMS for p in PODS}, (busy, processing, deferred)
        assert processing == {p: SLOTS for p in PODS} and deferred == {p: STREAMS - SLOTS for p in PODS}
        avg = sum(busy.values()) / len(busy)
        up_hpa = hpa_desired(len(PODS), avg, target, *bounds)
        (total,) = keda_busy.values()
        up_keda = hpa_desired(len(PODS), total / len(PODS), float(keda["threshold"]), scaled["minReplicaCount"],
                              scaled["maxReplicaCount"])
        assert total == 2 * STREAMS and up_hpa == up_keda == 3 > len(PODS)
        # applied at once (no scale-up stabilization) and within the chart's scale-up policy
        up = hpa["behavior"]["scaleUp"]
        assert up["stabilizationWindowSeconds"] == 0 and up_hpa - len(PODS) <= up["policies"][0]["value"]
        assert all(code == 200 for load in loads for code in load.answers)
        t_busy = time.monotonic() - t0

        for load in loads:
            load.stop()
        calm = _per_pod(prom.wait_for(per_pod_query, lambda r: set(r.values()) == {0.0}, timeout=60))
        (keda_calm,) = prom.query(keda["query"]).values()
        assert calm == {p: 0.0 for p in PODS} and keda_calm == 0.0
        down_hpa = hpa_desired(len(PODS), sum(calm.values()) / len(calm), target, *bounds)
        down_keda = hpa_desired(len(PODS), keda_calm / len(PODS), float(keda["threshold"]),
                                scaled["minReplicaCount"], scaled["maxReplicaCount"])
        assert down_hpa == hpa["minReplicas"] == down_keda == scaled["minReplicaCount"] == 1
        # the HPA applies that after the chart's scale-down stabilization window, a pod a minute
        assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
        print(f"\nprometheus: per-pod in-flight under load {busy} (processing {processing}, deferred {deferred}), "
              f"HPA {len(PODS)} -> {up_hpa} (target {target:g}/pod), KEDA total {total:g} -> {up_keda}; "
              f"idle {calm} -> HPA {down_hpa}, KEDA {down_keda}; load seen {t_busy:.1f} s after the first scrape, "
              f"idle after {time.monotonic() - t0:.1f} s")
    finally:
        for load in loads:
            load.stop()
        if prom is not None:
            prom.stop()
        for s in servers:
            assert s.stop() == 0
