"""Black-box tests of the native routes on a real server with the real SmolLM2 model:
/completion, /tokenize, /detokenize, /props, /slots, /metrics, and the slot scheduler."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


@pytest.fixture(scope="module")
def endless():
    """With --context-shift, a request for n_predict -1 under ignore_eos never ends on its own."""
    s = ServerProcess("-c", "256", "-np", "2", "--context-shift", "--metrics")
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def _metric(c, name: str) -> float:
    return float(c.get("/metrics").text.split(f"\n{name} ")[1].split()[0])


def _wait_idle(c, sid: int, limit: float = 60) -> dict:
    """/slots' entry for sid once it is idle. The limit only bounds a failing run: the generations
    here never end by themselves, so without a working cancel the slot is busy for ever."""
    deadline = time.monotonic() + limit
    while True:
        slot = c.get("/slots").json()[sid]
        if not slot["is_processing"] or time.monotonic() > deadline:
            return slot
        time.sleep(0.05)


def test_disconnect_cancels_and_frees_the_slot(endless):
    """A client that goes away (a stream closed after three events, a non-streamed request whose
    client times out) ends its generation: the slot becomes idle although its generation has no
    end of its own (n_predict -1, ignore_eos, context shift), and the decode counters stop.
    Speed-independent: a broken cancel leaves the slot busy however fast the machine is."""
    endless_req = {"prompt": "Tell me a story", "n_predict": -1, "ignore_eos": True, "temperature": 0}
    with endless.client() as c:
        for sid, stream in ((1, True), (0, False)):
            predicted = _metric(c, "llamacpp:tokens_predicted_total")
            if stream:
                with c.stream("POST", "/completion", json={**endless_req, "stream": True, "id_slot": sid}) as r:
                    seen, lines = 0, []
                    for line in r.iter_lines():
                        seen += line.startswith("data: ")
                        lines.append(line)
                        if seen == 3:
                            break
                    # a stream that ended by itself is a failure of its own, not of the cancel
                    assert seen == 3, (lines, endless.output()[-3000:])
                    # /slots is read from the HTTP thread: allow it a moment to show the slot's count
                    deadline = time.monotonic() + 5
                    while True:
                        slots = c.get("/slots").json()
                        busy = slots[sid]
                        if busy["is_processing"] and busy["next_token"][0]["n_decoded"] >= 3:
                            break
                        assert time.monotonic() < deadline, (slots, lines, endless.output()[-3000:])
                        time.sleep(0.05)
            else:  # a raw socket: closed once the slot is seen generating
                body = json.dumps({**endless_req, "id_slot": sid}).encode()
                with socket.create_connection(("127.0.0.1", endless.port)) as sock:
                    sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    deadline = time.monotonic() + 60
                    while c.get("/slots").json()[sid].get("next_token", [{}])[0].get("n_decoded", 0) < 3:
                        assert time.monotonic() < deadline, "the request never started"
                        time.sleep(0.02)
            slot = _wait_idle(c, sid)
            assert not slot["is_processing"], f"slot {sid} still generating after its client left"
            assert slot["next_token"][0]["n_decoded"] == 0 and slot["next_token"][0]["has_next_token"] is False
            # the cancelled task's tokens are counted once, when it left the slot; nothing decodes after
            done = _metric(c, "llamacpp:tokens_predicted_total")
            assert done >= predicted + 3
            decodes = _metric(c, "llamacpp:n_decode_total")
            time.sleep(0.3)
            assert _metric(c, "llamacpp:n_decode_total") == decodes
            assert _metric(c, "llamacpp:tokens_predicted_total") == done
        assert _metric(c, "llamacpp:requests_processing") == 0
        assert "engine step failed" not in endless.output()  # freed by the cancel, not by an engine error
        ok = c.post("/completion", json={"prompt": "Hello", "n_predict": 4, "temperature": 0, "id_slot": 1})
        assert ok.status_code == 200 and ok.json()["tokens_predicted"] == 4  # the freed slot serves again


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


def test_structured_output_streamed(http):
    """json_schema, grammar and response_format with stream: true: the streamed pieces join into
    text that parses and matches the schema, and equal the same request's non-streamed text."""
    import jsonschema

    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 150},
                                               "pets": {"type": "array", "items": {"enum": ["cat", "dog"]},
                                                        "maxItems": 2}},
              "required": ["name", "age", "pets"], "additionalProperties": False}
    for seed in (3, 4):
        body = {"prompt": "A person as JSON:", "n_predict": 80, "seed": seed, "json_schema": schema}
        whole = http.post("/completion", json=body).json()
        events = sse_events(http.post("/completion", json={**body, "stream": True}))
        assert all(kind == "data" for kind, _ in events) and events[-1][1]["stop_type"] == "eos", events[-1]
        text = "".join(e["content"] for _, e in events)
        jsonschema.validate(json.loads(text), schema)
        assert text == whole["content"]
    gram = {"prompt": "Is water wet? Answer:", "n_predict": 8, "seed": 1, "temperature": 1.5,
            "grammar": 'root ::= ("yes" | "no" | "maybe") "." [0-9]'}
    text = "".join(e["content"] for _, e in sse_events(http.post("/completion", json={**gram, "stream": True})))
    assert re.fullmatch(r"(yes|no|maybe)\.[0-9]", text), text
    assert text == http.post("/completion", json=gram).json()["content"]
    for fmt in ({"type": "json_schema", "json_schema": {"schema": schema}}, {"type": "json_object"}):
        chat = {"messages": [{"role": "user", "content": "Describe a person."}], "max_tokens": 80, "seed": 5,
                "response_format": fmt}
        events = sse_events(http.post("/v1/chat/completions", json={**chat, "stream": True}))
        assert events[-1] == ("done", None)
        chunks = [e for kind, e in events if kind == "data"]
        text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
        finish = [ch["choices"][0]["finish_reason"] for ch in chunks
                  if ch["choices"] and ch["choices"][0]["finish_reason"]]
        assert finish == ["stop"], finish
        parsed = json.loads(text)
        if fmt["type"] == "json_schema":
            jsonschema.validate(parsed, schema)
        else:
            assert isinstance(parsed, dict)
        whole = http.post("/v1/chat/completions", json=chat).json()
        assert whole["choices"][0]["message"]["content"] == text


def test_response_fields_and_streamed_slot_ids(http):
    out = greedy(http, "Hello", 2, response_fields=["content", "generation_settings/n_predict", "missing"])
    # llama-server keys a nested field by its whole path
    assert set(out) == {"content", "generation_settings/n_predict"} and out["generation_settings/n_predict"] == 2
    r = http.post("/completion", json={"prompt": "Hello", "n_predict": 2, "stream": True, "id_slot": 3})
    assert {e["id_slot"] for _, e in sse_events(r)} == {3}
