"""--spec-type ngram-simple on a real server with SmolLM2: asked to rewrite a code snippet as it is,
the model copies it from its prompt, so n-gram drafts get accepted. The same server with a request's
speculative.n_max 0 decodes without drafts: the greedy answers must be the same, token for token,
streamed or not, with n_predict, stop strings and probabilities; timings and /metrics report the
drafted and accepted tokens under llama-server's names."""

from __future__ import annotations

import concurrent.futures as cf

from tests.served import module_server
from tests.server_proc import sse_events
from tests.speculation import OFF, SNIPPET, answers_fixture, completer, rewrite_prompt, spec_metrics

server = module_server("server", "-c", "2048", "-np", "2", "--metrics", "--spec-type", "ngram-simple")

PROMPT = rewrite_prompt(SNIPPET)
N = 80
complete = completer(PROMPT, N)
answers = answers_fixture(complete)  # (without drafts, with drafts): the same greedy request


def test_greedy_output_is_the_same_with_and_without_drafts_and_drafts_are_accepted(answers):
    plain, spec = answers
    assert SNIPPET in spec["content"]  # it copies: what drafting is for
    assert spec["content"] == plain["content"] and spec["tokens_predicted"] == plain["tokens_predicted"] == N
    t = spec["timings"]
    assert t["draft_n"] > 0 and t["draft_n_accepted"] > 30 and t["draft_n_accepted"] <= t["draft_n"], t
    assert "draft_n" not in plain["timings"]  # llama-server's rule: present when speculation ran


def test_a_stream_sends_the_same_tokens_one_by_one(server, answers):
    with server.client() as c:
        r = c.post("/completion", json={"prompt": PROMPT, "n_predict": N, "temperature": 0, "stream": True,
                                        "cache_prompt": False})
    events = [e for kind, e in sse_events(r) if kind == "data"]
    assert "".join(e["content"] for e in events) == answers[1]["content"]
    assert len(events) > N // 2  # accepted tokens go out one by one, not as one chunk per step
    assert events[-1]["stop"] and events[-1]["timings"]["draft_n_accepted"] > 0


def test_stop_strings_n_predict_and_probabilities_are_those_of_plain_decoding(server):
    with server.client() as c:
        for kw in ({"n_predict": 37, "n_probs": 3}, {"stop": ["total +="]}):
            plain, spec = complete(c, **kw, **OFF), complete(c, **kw)
            assert spec["content"] == plain["content"] and spec["stop_type"] == plain["stop_type"], kw
            assert spec["tokens_predicted"] == plain["tokens_predicted"], kw
            assert spec["timings"]["draft_n_accepted"] > 0, kw
            if "n_probs" in kw:
                assert spec["tokens_predicted"] == len(spec["completion_probabilities"]) == 37
                for a, b in zip(spec["completion_probabilities"], plain["completion_probabilities"]):
                    assert a["top_logprobs"] == b["top_logprobs"] and a["logprob"] == b["logprob"]
    assert spec["stop_type"] == "word" and spec["content"].endswith("total = 0\nfor n in range(40):\n    ")


def test_two_slots_speculate_in_one_batch(server, answers):
    with server.client() as c, cf.ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: complete(c), range(2)))
    assert [b["content"] for b in both] == [answers[0]["content"]] * 2
    assert all(b["timings"]["draft_n_accepted"] > 0 for b in both)


def test_metrics_slots_and_props_report_speculation(server, answers):
    with server.client() as c:
        text = c.get("/metrics").text
        slots = c.get("/slots").json()
        props = c.get("/props").json()
    n, per_pos = spec_metrics(text)
    assert n["spec_decode_num_drafts_total"] > 0 and n["spec_decode_num_draft_tokens_total"] > 0
    assert 0 < n["spec_decode_num_accepted_tokens_total"] <= n["spec_decode_num_draft_tokens_total"]
    assert len(per_pos) == 48 and int(per_pos[0][1]) > 0  # one per position up to --spec-ngram-simple-size-m
    assert sum(int(v) for _, v in per_pos) == n["spec_decode_num_accepted_tokens_total"]
    assert all(s["speculative"] for s in slots)
    assert props["default_generation_settings"]["params"]["speculative.types"] == "ngram-simple"


def test_bad_speculative_fields_get_400(server):
    with server.client() as c:
        for body in ({"speculative.n_max": -1}, {"speculative.p_min": 2}, {"speculative.n_min": "3"}):
            r = c.post("/completion", json={"prompt": "Hi", "n_predict": 1, **body})
            assert r.status_code == 400, (body, r.text)
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and "speculative." in err["message"], err
