"""The locustfile against a real llamajit server on loopback: a short run passes with its
custom METRIC rows present and consistent, the server's /metrics view agrees with locust's
token count, and the exit code turns non-zero on a failed request or a p95 TTFT over the bound.
"""

from __future__ import annotations

import csv
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.server_proc import ROOT, ServerProcess

LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
KEY = secrets.token_hex(8)
MAX_TOKENS = 4


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("-np", "2", "-c", "1024", "--metrics", "--embeddings", "--pooling", "mean",
                      env={"LLAMA_API_KEY": KEY})
    # the server logs every request: keep its pipe drained or it blocks on a full buffer
    threading.Thread(target=lambda: [None for _ in s.proc.stdout], daemon=True).start()
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def locust(url: str, *args: str, key: str = KEY, timeout: float = 240,
           pythonpath: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", url,
           "--stop-timeout", "120", "--prompt-tokens", "16", "--max-tokens", str(MAX_TOKENS), *args]
    env = {**os.environ, "LLAMA_API_KEY": key}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def rows(path: Path) -> dict[tuple[str, str], dict]:
    with open(path) as f:
        return {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}


def test_short_run_passes_with_plausible_metrics(server, tmp_path):
    prefix = tmp_path / "run"
    r = locust(server.url, "-u", "3", "-r", "3", "-t", "6s", "--csv", str(prefix), "--html", str(tmp_path / "run.html"),
               "ChatStreamUser", "CompletionUser", "EmbeddingUser")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    stats = rows(Path(f"{prefix}_stats.csv"))

    for req in ("/v1/chat/completions stream", "/v1/completions", "/v1/embeddings"):
        row = stats[("POST", req)]
        assert int(row["Request Count"]) >= 1 and int(row["Failure Count"]) == 0, row

    m = {name: row for (kind, name), row in stats.items() if kind == "METRIC"}
    for name in ("TTFT ms chat stream", "ITL ms chat stream", "tokens/s chat stream", "E2E ms chat stream",
                 "tokens/s completions", "E2E ms completions", "E2E ms embeddings"):
        assert name in m, sorted(m)
        assert int(m[name]["Failure Count"]) == 0
    avg = {name: float(row["Average Response Time"]) for name, row in m.items()}
    n = int(m["E2E ms chat stream"]["Request Count"])
    assert n == int(stats[("POST", "/v1/chat/completions stream")]["Request Count"])
    # ignore_eos: every generation is exactly --max-tokens long (the rows' content size)
    for name in ("E2E ms chat stream", "E2E ms completions", "TTFT ms chat stream"):
        assert float(m[name]["Average Content Size"]) == MAX_TOKENS
    # the first token comes before the end, and the gaps after it fit in what is left
    assert 0 < avg["TTFT ms chat stream"] < avg["E2E ms chat stream"]
    assert 0 < avg["ITL ms chat stream"] * (MAX_TOKENS - 1) <= avg["E2E ms chat stream"] - avg["TTFT ms chat stream"] + 1
    # tokens/s is MAX_TOKENS over each request's own time: between the bounds given by E2E
    for label in ("chat stream", "completions"):
        e2e_min = float(m[f"E2E ms {label}"]["Min Response Time"])
        e2e_max = float(m[f"E2E ms {label}"]["Max Response Time"])
        assert MAX_TOKENS * 1e3 / e2e_max * 0.98 <= avg[f"tokens/s {label}"] <= MAX_TOKENS * 1e3 / e2e_min * 1.02
    # the row of the streamed request carries the whole stream's time, not time to headers
    assert float(stats[("POST", "/v1/chat/completions stream")]["Average Response Time"]) >= avg["TTFT ms chat stream"]

    # the server's view: /metrics counted exactly the tokens locust received (all requests ran to the end)
    assert "Server's view" in out and "PASS:" in out
    view = {row[0]: row[1:] for row in csv.reader(open(f"{prefix}_server.csv"))}
    generated = n * MAX_TOKENS + int(m["E2E ms completions"]["Request Count"]) * MAX_TOKENS
    assert view["tokens predicted"] == [str(generated), str(generated)], view
    assert int(view["/metrics samples during the run"][1]) > 0
    assert int(view["peak requests_processing"][1]) >= 1
    assert "TTFT ms chat stream" in (tmp_path / "run.html").read_text()


def test_p95_ttft_over_the_bound_fails_the_run(server):
    r = locust(server.url, "-u", "1", "-r", "1", "-t", "3s", "--max-ttft-p95", "0.5", "ChatStreamUser")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[:3000]
    # the requests themselves succeeded: the bound alone fails the run
    assert "FAIL: p95 TTFT" in out and "requests failed" not in out


def test_failed_request_fails_the_run(server):
    r = locust(server.url, "-u", "1", "-r", "1", "-t", "2s", "ChatUser", key="wrong-key")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[:3000]
    assert "FAIL:" in out and "requests failed" in out and "HTTP 401" in out


def test_runs_where_locust_is_installed_alone(server, tmp_path):
    """`pip install locust` brings no prometheus-client: the run goes on without the server's
    view and says what to install (a module that fails to import stands in for the missing one)."""
    (tmp_path / "prometheus_client.py").write_text("raise ImportError(\"No module named 'prometheus_client'\")\n")
    r = locust(server.url, "-u", "1", "-r", "1", "-t", "3s", "ChatUser", pythonpath=str(tmp_path))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "No module named" not in out and "pip install -r loadtests/requirements.txt" in out
    assert "E2E ms" in out  # locust's own rows are all there
