"""longrope on a real server: the factor table comes from the context per sequence as llama.cpp
computes it from the flags (service.api.state), not from the slot's own context. -c 513 -np 2 gives
each slot 256 tokens, but llama.cpp's 512 (513 rounded up to 768, halved, rounded up again) is above
the model's original 320: the long table, so the answers must be llama-server's at -c 512
(tests/fixtures/rope_scaling_llamacpp.json); -c 256 -np 1 the short table, llama-server's at -c 256.
Bound as tests/test_rope_longrope.py (4e-3 on the recorded top-10 logprobs), greedy tokens equal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.rope_models import write_case
from tests.server_proc import ServerProcess

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "rope_scaling_llamacpp.json").read_text())
BOUND = 4e-3


@pytest.mark.parametrize("flags,entry", [(("-c", "513", "-np", "2"), "phi3-longrope-c512"),
                                         (("-c", "256", "-np", "1"), "phi3-longrope-c256")], ids=["long", "short"])
def test_the_server_runs_llamacpps_table(tmp_path, flags, entry):
    srv = ServerProcess(*flags, "--no-warmup", model=write_case(tmp_path, "phi3-longrope")).wait_ready()
    try:
        with srv.client() as c:
            for case in FIXTURE["models"][entry]["cases"]:
                body = {"prompt": case["prompt"], "n_predict": len(case["tokens"]), "temperature": 0, "n_probs": 10,
                        "return_tokens": True, "cache_prompt": False, "ignore_eos": True}
                r = c.post("/completion", json=body)
                assert r.status_code == 200, r.text
                got = r.json()
                assert got["tokens"] == case["tokens"], (entry, case["prompt"])
                for step, ref in zip(got["completion_probabilities"], case["steps"]):
                    ours = {t["id"]: t["logprob"] for t in step["top_logprobs"]}
                    common = [i for i in ref["top_ids"] if i in ours]
                    assert len(common) >= 8, (entry, ref["top_ids"], list(ours))
                    worst = max(abs(ours[i] - lp) for i, lp in zip(ref["top_ids"], ref["top_logprobs"]) if i in ours)
                    assert worst <= BOUND, (entry, case["prompt"], worst)
    finally:
        srv.stop()
