"""Pass or fail of a run, from locust's statistics: the exit code and the lines that say why.

Fails (exit 1) on any failed request, on a run in which no request finished (it measured
nothing), and, with a threshold, when the p95 TTFT over every streamed user's "TTFT ms" rows
exceeds it, or when no TTFT was measured at all (the check was asked for and cannot be made).
"""

from __future__ import annotations

from locust.stats import StatsEntry


def merged(stats, prefix: str) -> StatsEntry | None:
    """The METRIC rows whose name starts with `prefix`, added into one entry."""
    rows = [e for (name, method), e in stats.entries.items() if method == "METRIC" and name.startswith(prefix)]
    if not rows:
        return None
    out = StatsEntry(stats, prefix.strip(), "METRIC")
    for e in rows:
        out.extend(e)
    return out


def judge(stats, max_ttft_p95_ms: float) -> tuple[int, list[str]]:
    lines, code = [], 0
    requests = [e for (_, method), e in stats.entries.items() if method != "METRIC"]
    failures = sum(e.num_failures for e in requests)
    finished = sum(e.num_requests for e in requests)
    if failures:
        code = 1
        lines.append(f"FAIL: {failures} of {finished + failures} requests failed")
    if finished == 0:
        code = 1
        lines.append("FAIL: no request finished during the run")
    ttft = merged(stats, "TTFT ms ")
    if ttft is not None:
        p50, p95 = ttft.get_response_time_percentile(0.5), ttft.get_response_time_percentile(0.95)
        lines.append(f"TTFT over {ttft.num_requests} streams: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    if max_ttft_p95_ms > 0:
        if ttft is None or ttft.num_requests == 0:
            code = 1
            lines.append(f"FAIL: --max-ttft-p95 {max_ttft_p95_ms:g} ms asked, but no streamed request finished")
        elif ttft.get_response_time_percentile(0.95) > max_ttft_p95_ms:
            code = 1
            lines.append(f"FAIL: p95 TTFT {ttft.get_response_time_percentile(0.95):.0f} ms "
                         f"> --max-ttft-p95 {max_ttft_p95_ms:g} ms")
    if code == 0:
        lines.append(f"PASS: {finished} requests, no failures")
    return code, lines
