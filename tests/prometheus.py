"""A real Prometheus (.tools/bin/prometheus, Debian's build) scraping llama-server processes the
way the chart's ServiceMonitor tells prometheus-operator to, plus the two consumers of its data
the chart configures: prometheus-adapter (its rule's metricsQuery template, filled in as the
adapter fills it for the HPA's pods) and the HorizontalPodAutoscaler's replica formula.

What prometheus-operator would derive from the ServiceMonitor and how it is reproduced here:
- one job per endpoint, named serviceMonitor/<namespace>/<name>/<index>, with the endpoint's
  path, scheme and `authorization` (type and credentials, the Secret's key written to a file
  Prometheus reads: credentials_file);
- targets found through the Service's endpoints and labelled namespace, service, pod, container,
  endpoint (the port's name) and job (the Service's name): here static targets on loopback
  carrying the same labels;
- the scrape interval and timeout are shortened to 1 s (the chart's 15 s/10 s would make the
  test wait minutes); the rest is the ServiceMonitor's.
"""

from __future__ import annotations

import base64
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

SCRAPE = "1s"


@dataclass
class Target:
    url: str  # http://127.0.0.1:PORT
    pod: str


def scrape_config(sm: dict, secrets: list[dict], targets: list[Target], workdir: Path, namespace: str,
                  service: str, container: str = "server") -> list[dict]:
    """prometheus.yml scrape_configs for a rendered ServiceMonitor."""
    jobs = []
    for i, ep in enumerate(sm["spec"]["endpoints"]):
        job = {"job_name": f"serviceMonitor/{namespace}/{sm['metadata']['name']}/{i}",
               "metrics_path": ep.get("path", "/metrics"), "scheme": ep.get("scheme", "http"),
               "scrape_interval": SCRAPE, "scrape_timeout": SCRAPE,
               "static_configs": [{"targets": [t.url.split("://", 1)[1]],
                                   "labels": {"namespace": namespace, "service": service, "pod": t.pod,
                                              "container": container, "endpoint": ep["port"], "job": service}}
                                  for t in targets]}
        auth = ep.get("authorization")
        if auth:
            ref = auth["credentials"]
            (secret,) = [s for s in secrets if s["metadata"]["name"] == ref["name"]]
            token = workdir / f"{ref['name']}-{ref['key']}"
            token.write_bytes(base64.b64decode(secret["data"][ref["key"]]))
            token.chmod(0o600)
            job["authorization"] = {"type": auth.get("type", "Bearer"), "credentials_file": str(token)}
        jobs.append(job)
    return jobs


class Prometheus:
    """`prometheus` on a free loopback port with its own storage; queried through its HTTP API."""

    def __init__(self, binary: str, scrape_configs: list[dict], workdir: Path, port: int):
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump({"global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
                                          "scrape_configs": scrape_configs}))
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout: float = 60) -> "Prometheus":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if self.http.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("prometheus not ready")

    def _api(self, path: str, **params) -> dict | list:
        r = self.http.get(f"/api/v1/{path}", params=params)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", body
        return body["data"]

    def targets(self) -> list[dict]:
        return self._api("targets")["activeTargets"]

    def series(self, match: str) -> list[dict]:
        return self._api("series", **{"match[]": match})

    def query(self, expr: str) -> dict[tuple, float]:
        """An instant query's vector as {tuple of (label, value) pairs: value}."""
        data = self._api("query", query=expr)
        assert data["resultType"] == "vector", data
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in data["result"]}

    def wait_for(self, expr: str, ok, timeout: float = 60) -> dict[tuple, float]:
        """Query until ok(result) holds; the last result either way."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.query(expr)
            if ok(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.25)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def adapter_query(metrics_query: str, namespace: str, pods: list[str]) -> str:
    """prometheus-adapter's metricsQuery template (Go template, << >> delimiters) as the adapter
    fills it for the HPA's request `pods/* in namespace`: the resources' labels as matchers, the
    pod label as the grouping."""
    # (pod names are DNS labels: nothing in them needs escaping in a regex but the dot, which the
    # adapter leaves as it is too)
    label_matchers = f'namespace="{namespace}",pod=~"{"|".join(pods)}"'
    out = metrics_query.replace("<<.LabelMatchers>>", label_matchers).replace("<<.GroupBy>>", "pod")
    assert "<<" not in out, f"template variables left: {out}"
    return out


def hpa_desired(current: int, metric: float, target: float, min_replicas: int, max_replicas: int,
                tolerance: float = 0.1) -> int:
    """The HPA's replica recommendation for one metric with an AverageValue target (kube-controller-
    manager's replica calculator): metric is the average per pod (Pods metrics) or the total divided
    by the current replicas (External metrics, as KEDA's); within the tolerance nothing changes."""
    ratio = metric / target
    desired = current if abs(ratio - 1.0) <= tolerance else math.ceil(ratio * current)
    return max(min_replicas, min(max_replicas, desired))
