"""--spec-type draft-simple on a real server: SmolLM2 drafts for itself (-md with the same file), so
its greedy drafts are the model's own tokens. A request's speculative.n_max 0 decodes without drafts:
the answers must be the same, token for token, streamed or not, over two slots at once; timings and
/metrics report drafted and accepted tokens under llama-server's names (per position up to
--spec-draft-n-max). Also on the server: -md alone drafts nothing, as in llama-server."""

from __future__ import annotations

import concurrent.futures as cf

from tests.served import module_server
from tests.server_proc import SMOLLM2, ServerProcess, sse_events
from tests.speculation import OFF, answers_fixture, completer, spec_metrics

N_MAX = 4
server = module_server("server", "-c", "1024", "-np", "2", "--metrics", "-md", str(SMOLLM2), "-ngld", "0",
                       "--spec-type", "draft-simple", "--spec-draft-n-max", str(N_MAX))

PROMPT = "<|im_start|>user\nName the planets of the solar system, one per line.<|im_end|>\n<|im_start|>assistant\n"
N = 48
complete = completer(PROMPT, N)
answers = answers_fixture(complete)


def test_greedy_output_is_the_same_with_and_without_the_draft_model(answers):
    plain, spec = answers
    assert spec["content"] == plain["content"] and spec["tokens_predicted"] == plain["tokens_predicted"]
    assert plain["tokens_predicted"] > 20
    t = spec["timings"]
    # the model drafting for itself is right each time (up to the rounding of a batched row; at most one miss)
    assert t["draft_n"] >= N // 2 and t["draft_n_accepted"] >= t["draft_n"] - N_MAX, t
    assert "draft_n" not in plain["timings"]


def test_a_stream_and_two_slots_give_the_same_tokens(server, answers):
    with server.client() as c:
        r = c.post("/completion", json={"prompt": PROMPT, "n_predict": N, "temperature": 0, "stream": True})
        events = [e for kind, e in sse_events(r) if kind == "data"]
        with cf.ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda _: complete(c, cache_prompt=True), range(2)))
    assert "".join(e["content"] for e in events) == answers[0]["content"]
    assert events[-1]["timings"]["draft_n_accepted"] > 0
    assert [b["content"] for b in both] == [answers[0]["content"]] * 2
    assert all(b["timings"]["draft_n_accepted"] > 0 for b in both)


def test_metrics_and_props_report_the_drafts(server, answers):
    with server.client() as c:
        text = c.get("/metrics").text
        props = c.get("/props").json()
    n, per_pos = spec_metrics(text)
    assert n["spec_decode_num_drafts_total"] > 0 and n["spec_decode_num_draft_tokens_total"] > 0
    assert 0 < n["spec_decode_num_accepted_tokens_total"] <= n["spec_decode_num_draft_tokens_total"]
    assert len(per_pos) == N_MAX and int(per_pos[0][1]) > 0
    assert sum(int(v) for _, v in per_pos) == n["spec_decode_num_accepted_tokens_total"]
    assert props["default_generation_settings"]["params"]["speculative.types"] == "draft-simple"


def test_a_draft_model_without_draft_simple_drafts_nothing():
    s = ServerProcess("-c", "512", "-md", str(SMOLLM2), "--no-warmup")
    try:
        s.wait_ready()
        with s.client() as c:
            r = complete(c, n_predict=8)
        assert "draft_n" not in r["timings"]
        assert "the draft model is not used without --spec-type draft-simple" in s.output()
    finally:
        s.stop()


def test_the_draft_cache_takes_its_own_types(answers):
    """-ctkd / -ctvd: the draft model's cache in q8_0 (the model's own stays f16). Its drafts are
    checked by the model, so the answer is the one without drafts; they are still accepted. A
    quantized draft V cache with -fa off is refused with llama.cpp's message, as for -ctv."""
    s = ServerProcess("-c", "1024", "-np", "1", "-md", str(SMOLLM2), "-ngld", "0", "--spec-type", "draft-simple",
                      "--spec-draft-n-max", str(N_MAX), "-ctkd", "q8_0", "--cache-type-v-draft", "q8_0")
    try:
        s.wait_ready()
        with s.client() as c:
            r = complete(c)
        assert r["content"] == answers[0]["content"] and r["timings"]["draft_n_accepted"] > 0
        loaded = [line for line in s.output().splitlines() if '"draft model loaded"' in line]
        assert len(loaded) == 1 and '"cache_type_k": "q8_0"' in loaded[0] and '"cache_type_v": "q8_0"' in loaded[0]
    finally:
        s.stop()
    bad = ServerProcess("-md", str(SMOLLM2), "--spec-type", "draft-simple", "-ctvd", "q4_0", "-fa", "off")
    try:
        assert bad.proc.wait(60) == 1
        assert "quantized V cache requires flash_attn to be enabled" in bad.output()
    finally:
        bad.stop()
