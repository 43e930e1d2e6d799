"""GET /metrics: llama-server's `llamacpp:` metrics, then llamajit's own for fleet routing and
autoscaling (service.api.metrics_fleet: latency histograms, queue and KV gauges), then
prometheus-client's process metrics.

Names, help texts, types and meanings are llama-server's (service.engine.stats says how each is
counted), written as it writes them: `# HELP`, `# TYPE` and the sample under the same name,
counters first. The answer carries llama-server's Process-Start-Time-Unix header.

A scrape reads and empties the throughput bucket. While the server sleeps it answers from the
copy frozen on entering sleep, without waking it. With --sleep-idle-seconds the process metrics
are left out: llama-server's contract is that a scrape while asleep repeats the last one before
(counters frozen, throughputs zero), and live figures of this process (CPU seconds, memory that
the sleep just freed) would make every such answer differ.
"""

from __future__ import annotations

from litestar import Request, get
from litestar.response.base import ASGIResponse
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest

from service.api import metrics_fleet
from service.api.errors import not_supported
from service.engine.stats import Metrics

CONTENT_TYPE = "text/plain; version=0.0.4"  # Litestar adds "; charset=utf-8"


def render(m: Metrics, n_processing: int, n_deferred: int) -> str:
    counters = [
        ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", m.prompt.count),
        ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", m.n_prompt_cached),
        ("prompt_seconds_total", "Total time spent processing prompts", m.prompt.seconds),
        ("tokens_predicted_total", "Number of generation tokens processed", m.predict.count),
        ("tokens_predicted_seconds_total", "Total time spent generating tokens", m.predict.seconds),
        ("n_decode_total", "Total number of llama_decode() calls, excluding speculative decoding and multimodal "
                           "decoding", m.n_decode),
        ("n_tokens_max", "Largest observed sequence length (prompt + generation)", m.n_tokens_max),
        # speculative decoding (--spec-type): 0 when it is off, as llama-server's
        ("spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated", m.n_draft_tokens),
        ("spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted by the target model",
         m.n_draft_accepted),
        ("spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps",
         m.n_draft_steps),
    ]
    gauges = [
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s", m.prompt_bucket.per_second()),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s", m.predict_bucket.per_second()),
        ("requests_processing", "Number of requests processing", n_processing),
        ("requests_deferred", "Number of requests deferred", n_deferred),
        ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", m.busy_slots_per_decode),
    ]
    out = []
    for kind, items in (("counter", counters), ("gauge", gauges)):
        for name, doc, value in items:
            out.append(f"# HELP llamacpp:{name} {doc}\n# TYPE llamacpp:{name} {kind}\nllamacpp:{name} {value}\n")
    if m.accepted_per_pos:  # a labeled counter, once a speculative generation has ended (llama-server's rule)
        name = "llamacpp:spec_decode_num_accepted_tokens_per_pos_total"
        out.append(f"# HELP {name} Accepted tokens per draft position\n# TYPE {name} counter\n")
        out.extend(f'{name}{{position="{i}"}} {n}\n' for i, n in enumerate(m.accepted_per_pos))
    return "".join(out)


class _ExactHeaders(ASGIResponse):
    """A response that also sends headers under their names' exact case: Litestar lowercases the
    names it is given, and llama.cpp's tests look Process-Start-Time-Unix up in a plain dict."""

    def __init__(self, *, exact: list[tuple[bytes, bytes]], **kw):
        super().__init__(**kw)
        self.exact = exact

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        return super().encode_headers() + self.exact


def make_registry(state) -> CollectorRegistry | None:
    """prometheus-client's process and platform collectors; None with --sleep-idle-seconds (see above)."""
    if state.args.sleep_idle_seconds > 0:
        return None
    reg = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


@get("/metrics")
async def metrics(request: Request) -> ASGIResponse:
    st = request.app.state.server
    if not st.args.metrics:
        raise not_supported("This server does not support metrics endpoint. Start it with `--metrics`")
    e = st.engine  # never None here: the gate answers 503 until the model is loaded
    m = e.stats.scrape()
    text = render(m, e.n_busy, e.n_deferred)
    ads = getattr(getattr(st.loaded_model, "adapters", None), "items", ())
    text += metrics_fleet.render(m, e, ads, float(e.stats.t_start))
    reg = request.app.state.registry
    if reg is not None:
        text += generate_latest(reg).decode()
    return _ExactHeaders(body=text, media_type=CONTENT_TYPE,
                         exact=[(b"Process-Start-Time-Unix", str(e.stats.t_start).encode())])
