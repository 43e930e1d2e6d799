"""The `llamajit:` metrics: what a fleet router and an autoscaler need beyond llama-server's
`llamacpp:` names, appended to /metrics (service.api.metrics).

Named after the model-server protocol of the Gateway API Inference Extension, whose endpoint
picker (EPP) scores pods by queue length, running requests, KV-cache use and loaded LoRA
adapters: vLLM's names under our prefix, so an EPP `core-metrics-extractor` engine entry maps
them one to one (the chart's inference pool does; see helm/llamajit):

    llamajit:num_requests_waiting      gauge      tasks submitted and not in a slot
    llamajit:num_requests_running      gauge      tasks in a slot
    llamajit:kv_cache_usage_perc       gauge      KV cells holding a token / all cells (0..1)
    llamajit:lora_requests_info        gauge      with --lora: labels max_lora, running_lora_adapters,
                                                  waiting_lora_adapters; value: when they were loaded
    llamajit:time_to_first_token_seconds, time_per_output_token_seconds,
    e2e_request_latency_seconds, request_queue_time_seconds     histograms (service.engine.latency)
    llamajit:requests_rejected_total   counter    requests answered 503 for a full --max-queue

prometheus-client writes them (HELP, TYPE, cumulative `_bucket{le}`, `_sum`, `_count`); the
values come from one Stats.scrape() shared with the `llamacpp:` lines, so a sleeping server
answers from the same frozen copy.
"""

from __future__ import annotations

import os

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from service.engine.latency import Histogram
from service.engine.stats import Metrics

PREFIX = "llamajit:"
HISTOGRAMS = (  # (name, help, Latency attribute)
    ("time_to_first_token_seconds", "Time from a request's arrival to its first generated token", "ttft"),
    ("time_per_output_token_seconds", "Mean time between a request's generated tokens, one observation per "
                                      "request of 2 tokens or more", "tpot"),
    ("e2e_request_latency_seconds", "Time from a request's arrival until it left its slot", "e2e"),
    ("request_queue_time_seconds", "Time from a request's arrival until it took a slot", "queue"),
)


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [(floatToGoString(le), n) for le, n in h.cumulative()]
    return HistogramMetricFamily(PREFIX + name, doc, buckets=buckets, sum_value=h.total)


def families(m: Metrics, engine, adapters=(), t_loaded: float = 0.0) -> list:
    """Every `llamajit:` metric family, from one scrape `m` and the engine's live gauges."""
    out = [
        GaugeMetricFamily(PREFIX + "num_requests_waiting", "Requests waiting for a slot", value=engine.n_waiting),
        GaugeMetricFamily(PREFIX + "num_requests_running", "Requests holding a slot", value=engine.n_busy),
        GaugeMetricFamily(PREFIX + "kv_cache_usage_perc", "Share of the KV cache's cells holding a token (0 to 1)",
                          value=engine.kv_usage()),
        CounterMetricFamily(PREFIX + "requests_rejected", "Requests refused with 503 because the slots and "
                                                          "--max-queue were full", value=m.rejected),
    ]
    out += [_histogram(name, doc, getattr(m.latency, attr)) for name, doc, attr in HISTOGRAMS]
    if adapters:  # the EPP's LoRA affinity: every loaded adapter serves any request that names it
        info = GaugeMetricFamily(PREFIX + "lora_requests_info", "Loaded LoRA adapters (value: when they were loaded)",
                                 labels=["max_lora", "running_lora_adapters", "waiting_lora_adapters"])
        names = ",".join(os.path.splitext(os.path.basename(a.path))[0] for a in adapters)
        info.add_metric([str(len(adapters)), names, ""], t_loaded)
        out.append(info)
    return out


class _Once:
    """A collector of ready-made families: generate_latest() asks only for collect()."""

    def __init__(self, fams: list):
        self.fams = fams

    def collect(self):
        return iter(self.fams)


def render(m: Metrics, engine, adapters=(), t_loaded: float = 0.0) -> str:
    return generate_latest(_Once(families(m, engine, adapters, t_loaded))).decode()
