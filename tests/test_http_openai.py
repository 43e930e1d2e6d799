"""The official `openai` client against a real server with the real SmolLM2 model, plus
/apply-template, embeddings and /infill (tiny GGUF with fill-in-the-middle tokens)."""

from __future__ import annotations

import math

import numpy as np
import openai
import pytest

from tests.server_proc import ServerProcess
from tests.synthetic import Spec, write_model

# "Answer in one word." makes the answer clear-cut: llama.cpp's greedy reply is "The capital of
# France is Paris." with every step up to "Paris" at least 0.82 ahead of the runner-up (without it
# the first token is a 0.13 near-tie, "The" against "La", that rounding alone can flip).
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("-c", "2048", "-np", "2", "--embeddings", "--pooling", "mean", "-a", "smol")
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="sk-none", max_retries=0, timeout=120)


def test_models(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["smol"] and models[0].owned_by == "llamacpp"
    assert models[0].model_extra["meta"]["n_vocab"] == 49152


def test_chat_completion(client):
    r = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=12, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert c.message.role == "assistant" and "Paris" in c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_equals_non_stream_and_reports_usage(client):
    whole = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=16, temperature=0)
    chunks = list(client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=16, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_n_seed_stop_and_length(client):
    # cache_prompt off: a prompt read from the cache ends in a one-token step whose logits
    # differ in the last bits from a whole-prompt step (llama.cpp warns of the same)
    no_cache = {"cache_prompt": False}
    r = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=8, n=2, seed=42, temperature=1.0,
                                       extra_body=no_cache)
    assert [c.index for c in r.choices] == [0, 1]
    # as llama-server's child tasks: choice i draws with seed + i, so each choice is the answer a
    # single request with that seed gets (and two choices are not copies of one draw)
    for i in range(2):
        one = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=8, seed=42 + i, temperature=1.0,
                                             extra_body=no_cache)
        assert one.choices[0].message.content == r.choices[i].message.content
    short = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=3, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    stop = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=16, temperature=0, stop=["Paris"])
    assert "Paris" not in stop.choices[0].message.content and stop.choices[0].finish_reason == "stop"


def test_chat_logprobs(client):
    r = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=4, temperature=0, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token


def test_text_completions(client):
    r = client.completions.create(model="x", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text.startswith(" Paris")
    chunks = list(client.completions.create(model="x", prompt="The capital of France is", max_tokens=6,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text


def test_apply_template_and_chat_prompt_agree(server):
    with server.client() as c:
        p = c.post("/apply-template", json={"messages": MESSAGES}).json()["prompt"]
        assert p.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
        assert p.endswith("<|im_start|>assistant\n")
        direct = c.post("/completion", json={"prompt": p, "n_predict": 8, "temperature": 0}).json()["content"]
        chat = c.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 8, "temperature": 0}).json()
        assert chat["choices"][0]["message"]["content"] == direct


def test_embeddings(client, server):
    r = client.embeddings.create(model="x", input=["hello world", "the cat sat on the mat"])
    vecs = [np.array(d.embedding) for d in r.data]
    assert [d.index for d in r.data] == [0, 1] and all(v.shape == (576,) for v in vecs)
    assert all(math.isclose(np.linalg.norm(v), 1.0, rel_tol=1e-5) for v in vecs)
    assert r.usage.prompt_tokens > 0
    again = client.embeddings.create(model="x", input="hello world")
    assert np.allclose(again.data[0].embedding, vecs[0], atol=1e-6)
    with server.client() as c:
        native = c.post("/embedding", json={"content": "hello world", "embd_normalize": -1}).json()
        raw = np.array(native[0]["embedding"][0])
        assert np.allclose(raw / np.linalg.norm(raw), vecs[0], atol=1e-5)


def test_infill_needs_fim_tokens(server):
    with server.client() as c:
        r = c.post("/infill", json={"input_prefix": "def f(", "input_suffix": "    return x"})
        assert r.status_code == 501 and r.json()["error"]["type"] == "not_supported_error"


def test_infill_on_a_model_with_fim_tokens(tmp_path):
    spec = Spec(n_vocab=72)
    toks = ["<|bos|>", "<|eos|>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    toks += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    fim = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]
    pairs = [a + b for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"]
    toks += pairs[: 72 - len(toks) - 3] + fim
    meta = {"tokenizer.ggml.tokens": toks, "tokenizer.ggml.merges": [f"{p[0]} {p[1]}" for p in pairs[: 72 - 57]],
            "tokenizer.ggml.token_type": [3, 3] + [1] * 67 + [3, 3, 3],
            "tokenizer.ggml.fim_pre_token_id": 69, "tokenizer.ggml.fim_suf_token_id": 70,
            "tokenizer.ggml.fim_mid_token_id": 71, "tokenizer.ggml.add_bos_token": True}
    path = write_model(tmp_path / "fim.gguf", spec, meta=meta)
    s = ServerProcess("-c", "128", "-np", "1", model=path)
    try:
        s.wait_ready()
        with s.client() as c:
            r = c.post("/infill", json={"input_prefix": "abc", "input_suffix": "xyz", "prompt": "Q", "n_predict": 3,
                                        "temperature": 0, "return_tokens": True})
            assert r.status_code == 200, r.text
            out = r.json()
            ids = c.post("/tokenize", json={"content": "abc"}).json()["tokens"]
            sfx = c.post("/tokenize", json={"content": "xyz"}).json()["tokens"]
            mid = c.post("/tokenize", json={"content": "Q"}).json()["tokens"]
            assert out["tokens_evaluated"] == 1 + 1 + len(ids) + 1 + len(sfx) + 1 + len(mid)
            assert out["tokens_predicted"] == 3
            extra = c.post("/infill", json={"input_prefix": "abc", "input_suffix": "xyz", "n_predict": 1,
                                            "input_extra": [{"filename": "a", "text": "hello"}]}).json()
            assert extra["tokens_evaluated"] > out["tokens_evaluated"] - len(mid)
            bad = c.post("/infill", json={"input_prefix": "a", "input_extra": "nope"})
            assert bad.status_code == 400
    finally:
        s.stop()
