"""Black-box tests of the native routes on a real server with the real SmolLM2 model:
/completion, /tokenize, /detokenize, /props, /slots, /metrics, and the slot scheduler."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.server_proc import ServerProcess, sse_events

REF = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
NEAR_TIE = 0.5
PROMPTS = ["The capital of France is", "Once upon a time", "1, 2, 3, 4,", "def fib(n):",
           "Hello, my name is", "The sky is", "Water boils at", "My favourite food is"]


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("-c", "2048", "-np", "4", "--metrics", "-a", "smol")
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def http(server):
    with server.client() as c:
        yield c


def greedy(http, prompt, n, **kw):
    r = http.post("/completion", json={"prompt": prompt, "n_predict": n, "temperature": 0, "return_tokens": True, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_greedy_completion_reproduces_llama_cpp(http):
    for line in (REF / "smollm2_greedy.jsonl").read_text().splitlines():
        ref = json.loads(line)
        out = greedy(http, ref["prompt_ids"], len(ref["greedy_ids"]))
        assert out["tokens_evaluated"] == len(ref["prompt_ids"])
        for step, want in enumerate(ref["greedy_ids"]):
            top = ref["steps"][step]["top_logits"]
            if len(top) > 1 and top[0] - top[1] < NEAR_TIE:
                break
            assert out["tokens"][step] == want, (ref["prompt"], step)


def test_tokenize_and_detokenize_match_llama_cpp(http):
    for line in (REF / "smollm2_tokenize.jsonl").read_text().splitlines():
        ref = json.loads(line)
        r = http.post("/tokenize", json={"content": ref["text"], "add_special": ref["add_special"],
                                         "parse_special": ref["parse_special"]})
        assert r.status_code == 200 and r.json()["tokens"] == ref["ids"], ref["text"]
    r = http.post("/tokenize", json={"content": "Hello world", "with_pieces": True}).json()
    assert [t["piece"] for t in r["tokens"]] == ["Hello", " world"]
    ids = [t["id"] for t in r["tokens"]]
    assert http.post("/detokenize", json={"tokens": ids}).json() == {"content": "Hello world"}


def test_completion_response_fields(http):
    out = greedy(http, "The capital of France is", 8)
    for key in ("content", "tokens", "id_slot", "stop", "model", "tokens_predicted", "tokens_evaluated",
                "generation_settings", "prompt", "truncated", "stop_type", "stopping_word", "tokens_cached", "timings"):
        assert key in out, key
    assert out["stop"] is True and out["stop_type"] == "limit" and out["tokens_predicted"] == 8
    assert out["model"] == "smol" and out["truncated"] is False
    assert out["generation_settings"]["n_predict"] == 8 and out["generation_settings"]["temperature"] == 0
    t = out["timings"]
    assert t["predicted_n"] == 8 and t["predicted_per_second"] > 0 and t["prompt_n"] + t["cache_n"] == out["tokens_evaluated"]


def test_stream_framing_and_content_equal_the_non_streamed_result(http):
    whole = greedy(http, "Once upon a time", 12, cache_prompt=False)
    r = http.post("/completion", json={"prompt": "Once upon a time", "n_predict": 12, "temperature": 0,
                                       "stream": True, "cache_prompt": False})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("data: ") and r.text.endswith("\n\n")
    events = sse_events(r)
    assert all(kind == "data" for kind, _ in events)
    assert [e["stop"] for _, e in events[:-1]] == [False] * (len(events) - 1) and events[-1][1]["stop"] is True
    assert "".join(e["content"] for _, e in events) == whole["content"]
    assert sum(len(e["tokens"]) for _, e in events[:-1]) == 12


def test_stop_strings_end_generation_and_are_not_streamed(http):
    out = greedy(http, "1, 2, 3, 4,", 24, stop=["7"])
    assert out["stop_type"] == "word" and out["stopping_word"] == "7"
    assert out["content"] == " 5, 6, "
    r = http.post("/completion", json={"prompt": "1, 2, 3, 4,", "n_predict": 24, "temperature": 0, "stream": True,
                                       "stop": [", 7"]})
    text = "".join(e["content"] for _, e in sse_events(r))
    assert text == " 5, 6"


def test_several_prompts_give_a_list_and_n_predict_zero_only_evaluates(http):
    r = http.post("/completion", json={"prompt": ["Hello", [1, 2, 3], "The sky"], "n_predict": 2, "temperature": 0})
    out = r.json()
    assert isinstance(out, list) and [o["index"] for o in out] == [0, 1, 2]
    zero = greedy(http, "Hello there", 0)
    assert zero["tokens_predicted"] == 0 and zero["content"] == ""


def test_probabilities(http):
    out = greedy(http, "The capital of France is", 3, n_probs=5)
    probs = out["completion_probabilities"]
    assert len(probs) == 3
    for p, tok in zip(probs, out["tokens"]):
        assert p["id"] == tok and p["logprob"] <= 0 and len(p["top_logprobs"]) == 5
        assert isinstance(p["bytes"], list) and p["token"] == bytes(p["bytes"]).decode("utf-8", "replace")
        lps = [t["logprob"] for t in p["top_logprobs"]]
        assert lps == sorted(lps, reverse=True) and p["top_logprobs"][0]["id"] == tok  # greedy: the top one
    post = greedy(http, "The capital of France is", 2, n_probs=3, post_sampling_probs=True)
    for p in post["completion_probabilities"]:
        assert 0 < p["prob"] <= 1 and "top_probs" in p and p["top_probs"][0]["prob"] == pytest.approx(1.0)


def test_cache_prompt_reuses_the_common_prefix(http):
    prompt = "In a hole in the ground there lived a hobbit. Not a nasty, dirty, wet hole"
    a = greedy(http, prompt, 6, id_slot=2)
    b = greedy(http, prompt, 6, id_slot=2)
    assert a["id_slot"] == b["id_slot"] == 2
    assert b["tokens_cached"] >= b["tokens_evaluated"] - 1 and b["timings"]["prompt_n"] == 1
    assert a["content"] == b["content"]
    c = greedy(http, prompt + " filled with worms", 6)  # no id_slot: goes to the slot holding the prefix
    assert c["id_slot"] == 2 and c["tokens_cached"] >= a["tokens_evaluated"]


def test_concurrent_streams_equal_sequential_and_some_were_deferred(http, server):
    solo = [greedy(http, p, 16, cache_prompt=False)["content"] for p in PROMPTS]
    deferred = []
    stop = threading.Event()

    def watch():
        with server.client() as c:
            while not stop.is_set():
                m = c.get("/metrics").text
                deferred.append(float(m.split("\nllamacpp:requests_deferred ")[1].split()[0]))
                time.sleep(0.02)

    def one(p):
        with server.client() as c:
            r = c.post("/completion", json={"prompt": p, "n_predict": 16, "temperature": 0, "stream": True,
                                            "cache_prompt": False})
            return "".join(e["content"] for _, e in sse_events(r))

    w = threading.Thread(target=watch)
    w.start()
    try:
        with ThreadPoolExecutor(8) as ex:
            together = list(ex.map(one, PROMPTS))
    finally:
        stop.set()
        w.join()
    assert together == solo
    assert max(deferred) > 0


def test_disconnect_cancels_and_frees_the_slot(http, server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        with c.stream("POST", "/completion", json={"prompt": "Tell me a story", "n_predict": 4000, "ignore_eos": True,
                                                   "stream": True, "id_slot": 1}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        if not http.get("/slots").json()[1]["is_processing"]:
            break
        time.sleep(0.05)
    assert not http.get("/slots").json()[1]["is_processing"]
    with httpx.Client(base_url=server.url, timeout=0.5) as c:  # a non-streamed request too
        with pytest.raises(httpx.ReadTimeout):
            c.post("/completion", json={"prompt": "Tell me a story", "n_predict": 4000, "ignore_eos": True,
                                        "id_slot": 3})
    time.sleep(1.0)
    assert not http.get("/slots").json()[3]["is_processing"]


def test_context_limits(http):
    long = " ".join(["word"] * 600)
    r = http.post("/completion", json={"prompt": long, "n_predict": 4})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "exceed_context_size_error" and err["n_ctx"] == 512 and err["n_prompt_tokens"] > 512
    out = greedy(http, " ".join(["word"] * 490), 100, ignore_eos=True)
    assert out["truncated"] is True and out["stop_type"] == "limit"
    assert out["tokens_evaluated"] + out["tokens_predicted"] <= 512


def test_props_slots_and_metrics(http):
    p = http.get("/props").json()
    assert p["total_slots"] == 4 and p["model_alias"] == "smol" and p["model_path"].endswith(".gguf")
    assert p["default_generation_settings"]["params"]["top_k"] == 40 and "<|im_start|>" in p["chat_template"]
    caps = p["chat_template_caps"]  # SmolLM2's template prints system messages but knows no tools
    assert caps["supports_system_role"] is True and caps["supports_tool_calls"] is False
    slots = http.get("/slots").json()
    assert [s["id"] for s in slots] == [0, 1, 2, 3] and all("params" in s for s in slots)
    assert http.get("/slots", params={"fail_on_no_slot": 1}).status_code == 200
    before = http.get("/metrics").text
    greedy(http, "Count: one, two,", 5)
    after = http.get("/metrics").text

    def val(text, name):
        return float(text.split(f"\n{name} ")[1].split()[0])

    assert val(after, "llamacpp:tokens_predicted_total") == val(before, "llamacpp:tokens_predicted_total") + 5
    assert val(after, "llamacpp:n_decode_total") >= val(before, "llamacpp:n_decode_total") + 5
    assert "process_resident_memory_bytes" in after
    assert "# TYPE llamacpp:requests_processing gauge" in after


def test_structured_output(http):
    import jsonschema

    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer"},
                                               "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
              "required": ["name", "age", "tags"], "additionalProperties": False}
    for seed in (1, 2):
        out = http.post("/completion", json={"prompt": "A person as JSON:", "n_predict": 80, "seed": seed,
                                             "json_schema": schema}).json()
        assert out["stop_type"] == "eos", out
        jsonschema.validate(json.loads(out["content"]), schema)
    # a finished grammar ends the generation even under ignore_eos (its end token is not a loop)
    done = http.post("/completion", json={"prompt": "A person as JSON:", "n_predict": 150, "seed": 1,
                                          "ignore_eos": True, "json_schema": schema}).json()
    assert done["stop_type"] == "eos" and done["tokens_predicted"] < 150, done
    jsonschema.validate(json.loads(done["content"]), schema)
    yn = http.post("/completion", json={"prompt": "Is water wet? Answer:", "n_predict": 8,
                                        "grammar": 'root ::= ("yes" | "no") "."'}).json()
    assert yn["content"] in ("yes.", "no.")
    chat = http.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Describe a person."}], "n": 2, "max_tokens": 80,
        "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}).json()
    for choice in chat["choices"]:  # each choice matches the schema from its start
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)
    bad = http.post("/completion", json={"prompt": "x", "grammar": "root ::= foo"})
    assert bad.status_code == 400 and "foo" in bad.json()["error"]["message"]


def test_response_fields_and_streamed_slot_ids(http):
    out = greedy(http, "Hello", 2, response_fields=["content", "generation_settings/n_predict", "missing"])
    # llama-server keys a nested field by its whole path
    assert set(out) == {"content", "generation_settings/n_predict"} and out["generation_settings/n_predict"] == 2
    r = http.post("/completion", json={"prompt": "Hello", "n_predict": 2, "stream": True, "id_slot": 3})
    assert {e["id_slot"] for _, e in sse_events(r)} == {3}
