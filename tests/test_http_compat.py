"""llama-server behaviours a client of this version relies on, through a real SmolLM2 server:
token counts of chat and Responses requests, continuing a final assistant message, "__verbose",
Anthropic's usage split and empty conversations, the /responses alias, OpenAI content objects as
embedding inputs, the shape of generation_settings, a dated template, and -rea off.

Each expected value is llama-server's (tools/server of llama.cpp 0c1e570), read from its code
or its own tests (tests/unit/test_chat_completion.py, test_template.py, test_embedding.py,
test_compat_anthropic.py, test_ignore_eos.py).
"""

from __future__ import annotations

import datetime

import pytest

from tests.server_proc import ServerProcess, sse_events

HI = [{"role": "user", "content": "Hi"}]
THINKING = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("-c", "1024", "-np", "2", "--embeddings", "--pooling", "last").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(server):
    with server.client() as c:
        yield c


def test_input_tokens_of_chat_and_responses_requests(http):
    for path in ("/v1/chat/completions/input_tokens", "/chat/completions/input_tokens"):
        r = http.post(path, json={"messages": HI})
        assert r.status_code == 200 and r.json()["object"] == "response.input_tokens"
        n = r.json()["input_tokens"]
        # the same count the prompt of a real request has
        done = http.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 1}).json()
        assert n == done["usage"]["prompt_tokens"]
    r = http.post("/v1/responses/input_tokens", json={"input": "Hi"})
    assert r.status_code == 200 and r.json()["input_tokens"] == n
    assert http.post("/responses/input_tokens", json={"input": 5}).status_code == 400


def test_final_assistant_message_is_continued(http):
    tail = {"role": "assistant", "content": [{"type": "text", "text": "Wh"}, {"type": "text", "text": "ill"}]}
    r = http.post("/v1/chat/completions", json={"messages": [*HI, tail], "max_tokens": 2, "verbose": True})
    assert r.status_code == 200
    # the generation prompt, then the message's text parts joined by blank lines, and no end of turn
    assert r.json()["__verbose"]["prompt"].endswith("<|im_start|>assistant\nWh\n\nill")
    again = http.post("/v1/chat/completions", json={"messages": [*HI, {"role": "assistant", "content": "Whill"}],
                                                    "continue_final_message": True, "add_generation_prompt": False,
                                                    "max_tokens": 2, "verbose": True}).json()
    assert again["__verbose"]["prompt"].endswith("<|im_start|>assistant\nWhill")
    plain = http.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 2, "verbose": False}).json()
    assert "__verbose" not in plain


def test_anthropic_usage_and_an_empty_conversation(http):
    body = {"model": "m", "max_tokens": 3, "messages": HI}
    first = http.post("/v1/messages", json=body).json()["usage"]
    again = http.post("/v1/messages", json=body).json()["usage"]
    # input_tokens are the prompt tokens read now, cache_read_input_tokens those taken from the cache
    assert first["input_tokens"] + first["cache_read_input_tokens"] == again["input_tokens"] + again[
        "cache_read_input_tokens"]
    assert again["cache_read_input_tokens"] > 0 and again["input_tokens"] == 1
    r = http.post("/v1/messages", json={"model": "m", "max_tokens": 3, "messages": []})
    assert r.status_code == 200 and r.json()["type"] == "message"


def test_responses_route_without_v1(http):
    r = http.post("/responses", json={"input": "Hi", "max_output_tokens": 2})
    assert r.status_code == 200 and r.json()["object"] == "response"


def test_embedding_content_objects(http):
    r = http.post("/v1/embeddings", json={"input": [
        "hello world", {"content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]},
        {"prompt_string": "hello world"}]})
    assert r.status_code == 200
    a, b, c = (d["embedding"] for d in r.json()["data"])
    assert a == b == c
    for bad in ({"content": "x"}, {"content": [{"type": "unknown"}]},
                {"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}):
        r = http.post("/v1/embeddings", json={"input": bad})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", bad


def test_generation_settings_shape(http):
    gs = http.post("/completion", json={"prompt": "Hi", "n_predict": 1, "ignore_eos": True,
                                        "logit_bias": [[15, 2.0]]}).json()["generation_settings"]
    # {"bias", "token"} objects, -inf as null; ignore_eos adds every end-of-generation token
    assert gs["logit_bias"][0] == {"bias": 2.0, "token": 15}
    eog = [e for e in gs["logit_bias"][1:]]
    assert eog and all(e["bias"] is None for e in eog) and 2 in [e["token"] for e in eog]  # <|im_end|>
    for key in ("n_predict", "max_tokens", "grammar_lazy", "chat_format", "reasoning_format", "samplers",
                "speculative.types", "backend_sampling", "lora"):
        assert key in gs, key
    plain = http.post("/completion", json={"prompt": "Hi", "n_predict": 1}).json()["generation_settings"]
    assert plain["logit_bias"] == []


def test_usage_chunk_carries_the_timings(http):
    r = http.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 3, "stream": True,
                                                "stream_options": {"include_usage": True}})
    chunks = [e for _, e in sse_events(r) if isinstance(e, dict)]
    assert "timings" not in chunks[0]
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] <= 3
    assert {"prompt_per_second", "predicted_per_second", "predicted_n"} <= set(last["timings"])


@pytest.fixture(scope="module")
def templated(tmp_path_factory):
    d = tmp_path_factory.mktemp("tmpl")
    dated = d / "dated.jinja"
    dated.write_text("Today is {{ date_string }} ({{ datetime }}).{% for m in messages %}[{{ m.role }}]{{ m.content }}"
                     "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    think = d / "think.jinja"
    think.write_text(THINKING)
    servers = [ServerProcess("-c", "256", "-np", "1", "-n", "3", "--chat-template-file", str(dated)),
               ServerProcess("-c", "256", "-np", "1", "--chat-template-file", str(think), "-rea", "off"),
               ServerProcess("-c", "256", "-np", "1", "--chat-template-file", str(think), "--reasoning-budget", "3",
                             "--reasoning-budget-message", " Enough.")]
    yield [s.wait_ready() for s in servers]
    for s in servers:
        s.stop()


def test_templates_get_todays_date(templated):
    with templated[0].client() as c:
        prompt = c.post("/apply-template", json={"messages": HI}).json()["prompt"]
    today = datetime.date.today()
    assert f"Today is {today.strftime('%d %b %Y')} ({today.strftime('%b %d %Y')})." in prompt


def test_n_predict_of_the_request_wins_over_the_servers(templated):
    """-n is the default of a request that sets none; a request may ask for more (llama-server
    0c1e570's n_predict_max, which test_completion_unified checks)."""
    with templated[0].client() as c:
        for body, n in [({}, 3), ({"n_predict": 6}, 6), ({"max_tokens": 5}, 5)]:
            r = c.post("/completion", json={"prompt": "A", "ignore_eos": True, **body}).json()
            assert r["tokens_predicted"] == n


def test_reasoning_off_closes_the_thinking_block(templated):
    with templated[1].client() as c:
        prompt = c.post("/apply-template", json={"messages": HI}).json()["prompt"]
        assert prompt.endswith("<|im_start|>assistant\n<think>\n</think>")
        # the request's own chat_template_kwargs win over -rea
        prompt = c.post("/apply-template", json={"messages": HI, "chat_template_kwargs": {
            "enable_thinking": True}}).json()["prompt"]
        assert prompt.endswith("<think>\n")


def test_vertex_ai_predict_route():
    s = ServerProcess("-c", "512", "-np", "2", env={"AIP_MODE": "PREDICTION", "AIP_HEALTH_ROUTE": "/ping"})
    try:
        with s.wait_ready().client() as c:
            r = c.post("/predict", json={"instances": [
                {"@requestFormat": "chatCompletions", "max_tokens": 3, "messages": HI, "stream": True},
                {"@requestFormat": "/tokenize", "content": "Hi"},
                {"@requestFormat": "tokenize"},
                {"@requestFormat": "nope"}, "x"]})
            assert r.status_code == 200
            chat, tok, missing, nope, bad = r.json()["predictions"]
            assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
            assert tok == c.post("/tokenize", json={"content": "Hi"}).json()  # what the route itself answers
            assert missing["error"]["type"] == nope["error"]["type"] == bad["error"]["type"] == "invalid_request_error"
            assert c.get("/ping").json() == {"status": "ok"}
            assert c.post("/predict", json={"instances": "x"}).status_code == 400
            assert c.post("/predict", json={"instances": [{}] * 129}).status_code == 400
    finally:
        s.stop()


def test_thinking_budget_closes_the_block(templated):
    """The template opens a thinking block; after 3 tokens of it the budget forces its message and
    the closing tag, and the answer goes on as content (SmolLM2 would otherwise ramble on)."""
    with templated[2].client() as c:
        body = {"messages": HI, "max_tokens": 24, "temperature": 0}
        r = c.post("/v1/chat/completions", json=body).json()
        msg = r["choices"][0]["message"]
        assert msg["reasoning_content"].endswith("Enough.")
        n = len(c.post("/tokenize", json={"content": msg["reasoning_content"].removesuffix(" Enough.")}).json()["tokens"])
        assert n <= 3 and r["usage"]["completion_tokens"] == 24 and msg["content"]
        # the request's own budget wins: 0 closes the block before the first token
        r0 = c.post("/v1/chat/completions", json={**body, "reasoning_budget_tokens": 0,
                                                  "reasoning_budget_message": ""}).json()["choices"][0]["message"]
        assert not r0.get("reasoning_content") and r0["content"]
