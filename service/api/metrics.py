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
        yield CounterMetricFamily("llamacpp:prompt_tokens", "Number of prompt tokens processed.",
                                  value=s.prompt_tokens_total)
        yield CounterMetricFamily("llamacpp:prompt_seconds", "Prompt process time", value=s.prompt_seconds_total)
        yield CounterMetricFamily("llamacpp:tokens_predicted", "Number of generation tokens processed.",
                                  value=s.tokens_predicted_total)
        yield CounterMetricFamily("llamacpp:tokens_predicted_seconds", "Predict process time",
                                  value=s.tokens_predicted_seconds_total)
        yield CounterMetricFamily("llamacpp:n_decode", "Total number of llama_decode() calls",
                                  value=s.n_decode_total)
        yield GaugeMetricFamily("llamacpp:n_tokens_max", "Largest observed n_tokens.", value=s.n_tokens_max)
        yield GaugeMetricFamily("llamacpp:n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
                                value=s.busy_slots_per_decode)
        yield GaugeMetricFamily("llamacpp:prompt_tokens_seconds", "Average prompt throughput in tokens/s.",
                                value=prompt_tps)
        yield GaugeMetricFamily("llamacpp:predicted_tokens_seconds", "Average generation throughput in tokens/s.",
                                value=predicted_tps)
        yield GaugeMetricFamily("llamacpp:requests_processing", "Number of requests processing.", value=e.n_busy)
        yield GaugeMetricFamily("llamacpp:requests_deferred", "Number of requests deferred.", value=e.n_deferred)


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
