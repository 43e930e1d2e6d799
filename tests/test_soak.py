"""The soak (tests/soak.py) in CI's budget: 8 users for LLAMAJIT_SOAK_SECONDS (default 45, the
warm-up included) across every route, with mid-stream disconnects and malformed requests mixed
in. Zero failures, every route served, every slot idle at the end, and RSS growth after the
warm-up under RSS_GROWTH_MIB. `make soak` runs the same for an hour and prints the figures."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.server_proc import ServerProcess
from tests.soak import SCENARIOS, SERVER_ARGS, report, soak

SECONDS = float(os.environ.get("LLAMAJIT_SOAK_SECONDS", "45"))
# Measured on a 2-core CPU shared with other work (load average 6-7; SmolLM2, the arguments in
# tests/soak.py): RSS grew +14.9 and +16.6 MiB from the end of a 30 s warm-up to the end of a
# 120 s run. A 6-minute run showed where that comes from: +15 MiB in the first minute after the
# warm-up (the prompt cache and allocator arenas settling), then +1.2 MiB in the five minutes after
# (488 -> 489 MiB). The bound is about three times the 2-minute figure: a leak of ~200 KiB per
# request at this machine's ~1.8 requests/s (less on a faster one, which sends more) goes past it.
# The suite runs 45 s (an 11 s warm-up, then 34 s measured) to fit `make test`'s 25 minutes: there
# the settling falls inside the measured span and only a leak of ~600 KiB per request goes past the
# bound; the hour of `make soak` (docs/soak-2026-12-07.txt) is the leak check.
RSS_GROWTH_MIB = 48


@pytest.fixture(scope="module")
def server():
    s = ServerProcess(*SERVER_ARGS).wait_ready()
    try:
        yield s
    finally:
        s.stop()


def test_soak_at_8_users(server):
    warmup = min(30.0, SECONDS / 4)
    fig = asyncio.run(soak(server.url, server.proc.pid, SECONDS - warmup, warmup))
    print(report(fig))
    assert not fig.failures, report(fig)
    assert set(fig.requests) == set(SCENARIOS), report(fig)  # every route was exercised and answered
    assert fig.idle_at_end, report(fig)
    growth_mib = (fig.rss_kib["end"] - fig.rss_kib["warm"]) / 1024
    assert growth_mib < RSS_GROWTH_MIB, report(fig)
