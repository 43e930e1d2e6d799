"""--context-shift, --keep and the request fields n_keep / n_discard on real servers (256-token
slots). With the shift, a generation that fills its slot drops tokens after the first n_keep and
goes on; without it (the default), it stops there, truncated. A prompt that does not fit is
refused either way, as llama-server refuses it."""

from __future__ import annotations

import json

import pytest

from tests.served import module_server

PROMPT = " ".join(f"{w} number {i}," for i, w in enumerate(["apple", "river", "stone", "cloud"] * 6))
LONG = {"prompt": PROMPT, "n_predict": 160, "temperature": 0, "ignore_eos": True}

shifting = module_server("shifting", "-c", "256", "-np", "1", "--context-shift", "--keep", "5")
plain = module_server("plain", "-c", "256", "-np", "1")


def shifts(server) -> list[dict]:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == "slot context shift"]


def test_the_context_shifts_and_generation_goes_on(shifting):
    with shifting.client() as c:
        out = c.post("/completion", json=LONG).json()
    t = out["timings"]
    assert t["prompt_n"] + t["predicted_n"] > 256 and t["predicted_n"] == 160
    assert out["truncated"] is True and out["stop_type"] == "limit"
    assert out["generation_settings"]["n_keep"] == 5 and out["generation_settings"]["n_discard"] == 0
    first = shifts(shifting)[0]
    n_kv = 255  # the shift comes when the pending token's successor would not fit
    assert (first["n_keep"], first["n_discard"]) == (5, (n_kv - 5) // 2)  # --keep, then half of the rest


def test_n_keep_and_n_discard_of_the_request(shifting):
    with shifting.client() as c:
        seen = len(shifts(shifting))
        out = c.post("/completion", json={**LONG, "n_keep": 12, "n_discard": 40}).json()
        assert out["generation_settings"]["n_keep"] == 12 and out["generation_settings"]["n_discard"] == 40
        assert {(e["n_keep"], e["n_discard"]) for e in shifts(shifting)[seen:]} == {(12, 40)}
        whole = c.post("/completion", json={**LONG, "n_keep": -1}).json()  # -1: the whole prompt stays
        n_prompt = whole["tokens_evaluated"]
        assert shifts(shifting)[-1]["n_keep"] == n_prompt and whole["timings"]["predicted_n"] == 160
        for bad in ({"n_keep": -2}, {"n_discard": -1}):
            r = c.post("/completion", json={**LONG, **bad})
            assert r.status_code == 400 and next(iter(bad)) in r.json()["error"]["message"]


def test_without_the_shift_a_full_slot_stops_truncated(plain):
    with plain.client() as c:
        out = c.post("/completion", json=LONG).json()
    t = out["timings"]
    assert t["prompt_n"] + t["cache_n"] + t["predicted_n"] == 256  # the last token's successor would not fit
    assert out["truncated"] is True and out["stop_type"] == "limit" and not shifts(plain)


@pytest.mark.parametrize("which", ["shifting", "plain"])
def test_a_prompt_longer_than_the_slot_is_refused(request, which):
    server = request.getfixturevalue(which)
    with server.client() as c:
        r = c.post("/completion", json={"prompt": PROMPT * 3, "n_predict": 4})
    assert r.status_code == 400 and "exceeds the available context size" in r.json()["error"]["message"]
