"""GET /metrics: llama-server's `llamacpp:` metrics plus prometheus-client's process metrics.

Names, types and meanings follow llama-server: counters for totals, gauges for the two
throughputs averaged over the requests finished since the previous scrape, for the
requests in slots (requests_processing) and waiting for one (requests_deferred).
"""

from __future__ import annotations

from litestar import Request, Response, get
from prometheus_client import CollectorRegistry, ProcessCollector, PlatformCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from service.api.errors import not_supported

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector:
    def __init__(self, state):
        self.state = state

    def collect(self):
        e = self.state.engine
        if e is None:
            return
        s = e.stats
        prompt_tps, predicted_tps = s.take_bucket()
        counters = [
            ("prompt_tokens", "Number of prompt tokens processed.", s.prompt_tokens_total),
            ("prompt_seconds", "Prompt process time", s.prompt_seconds_total),
            ("tokens_predicted", "Number of generation tokens processed.", s.tokens_predicted_total),
            ("tokens_predicted_seconds", "Predict process time", s.tokens_predicted_seconds_total),
            ("n_decode", "Total number of llama_decode() calls", s.n_decode_total),
        ]
        gauges = [
            ("n_tokens_max", "Largest observed n_tokens.", s.n_tokens_max),
            ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
             s.busy_slots_per_decode),
            ("prompt_tokens_seconds", "Average prompt throughput in tokens/s.", prompt_tps),
            ("predicted_tokens_seconds", "Average generation throughput in tokens/s.", predicted_tps),
            ("requests_processing", "Number of requests processing.", e.n_busy),
            ("requests_deferred", "Number of requests deferred.", e.n_deferred),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily("llamacpp:" + name, doc, value=value)
        for name, doc, value in gauges:
            yield GaugeMetricFamily("llamacpp:" + name, doc, value=value)


def make_registry(state) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(EngineCollector(state))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


@get("/metrics")
async def metrics(request: Request) -> Response:
    st = request.app.state.server
    if not st.args.metrics:
        raise not_supported("This server does not support metrics endpoint. Start it with `--metrics`")
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE)
