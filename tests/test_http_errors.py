"""Client mistakes against a real server: each gets llama-server's 4xx error body, never a 500,
and the server keeps serving.

One server for the module: `-c 256 -np 2` (a 128-token slot, so a context overflow is cheap),
`-n 4` (a cap on generation, so fuzzed bodies stay fast), `--no-slots`, and no --metrics,
--embeddings, --reranking or --props (so those endpoints answer as disabled). Status codes,
error types and messages follow llama.cpp's tools/server (tests/unit/test_chat_completion.py,
test_ctx_shift.py, test_completion.py, its README's error section and its HTTP layer).
"""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server_proc import LoggedServer, sse_events

N_CTX, N_SLOTS = 256, 2
SLOT_CTX = N_CTX // N_SLOTS
N_VOCAB = 49152  # SmolLM2
USER = [{"role": "user", "content": "Hi"}]
OK_COMPLETION = {"prompt": "Hello", "n_predict": 2}
OK_CHAT = {"messages": USER, "max_tokens": 2}


@pytest.fixture(scope="module")
def server():
    s = LoggedServer("-c", str(N_CTX), "-np", str(N_SLOTS), "-n", "4", "--no-slots")
    try:
        s.srv.wait_ready()
        yield s
    finally:
        out = s.stop()
        # a client's mistake is logged as a 4xx, never as an unhandled error
        assert "unhandled error" not in out, out[-4000:]


@pytest.fixture(scope="module")
def client(server):
    with server.srv.client() as c:
        yield c


def assert_error(r: httpx.Response, status: int, type_: str, message: str | None = None) -> dict:
    """llama-server's error body: {"error": {"code", "message", "type", ...}}."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert err["code"] == status
    assert err["type"] == type_, err
    assert isinstance(err["message"], str) and err["message"]
    if message is not None:
        assert err["message"] == message
    return err


def post_raw(c: httpx.Client, path: str, raw: bytes) -> httpx.Response:
    return c.post(path, content=raw, headers={"Content-Type": "application/json"})


# -- the body is not a JSON object ------------------------------------------------------------

BODY_ROUTES = ["/completion", "/completions", "/v1/completions", "/v1/chat/completions", "/chat/completions",
               "/tokenize", "/detokenize", "/apply-template", "/infill"]


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("raw", [
    b'{"prompt": "Hello",', b"{prompt: 1}", b"not json", b'{"prompt": "a"} trailing', b"\xff\xfe{}",
    b'{"prompt": "a", "temperature": NaN}', b"[]", b'["Hello"]', b'"Hello"', b"42", b"null", b"true",
], ids=["truncated", "unquoted-key", "text", "trailing", "bad-utf8", "nan", "empty-array", "array",
        "string", "number", "null", "true"])
def test_body_not_a_json_object(client, path, raw):
    # /infill checks the body before it finds SmolLM2 has no fill-in-the-middle tokens
    assert_error(post_raw(client, path, raw), 400, "invalid_request_error")


# -- wrong types ------------------------------------------------------------------------------

WRONG_TYPES_NATIVE = [
    {"prompt": 5}, {"prompt": True}, {"prompt": {"text": "a"}}, {"prompt": [True]}, {"prompt": [1.5]},
    {"prompt": [[1, "a", None]]}, {"prompt": [None]},
    {"n_predict": "5"}, {"n_predict": 1.5}, {"n_predict": True}, {"n_predict": [2]},
    {"temperature": "hot"}, {"temperature": "0.5"}, {"temperature": [0.5]}, {"temperature": True},
    {"top_k": "40"}, {"top_k": 1.5}, {"top_k": True}, {"top_p": "0.9"}, {"min_p": {}},
    {"stop": 5}, {"stop": [1]}, {"stop": [["a"]]}, {"stop": {"a": 1}},
    {"stream": "yes"}, {"stream": 1}, {"cache_prompt": "no"}, {"return_tokens": 2}, {"ignore_eos": "true"},
    {"seed": "1"}, {"seed": 1.5}, {"seed": [1]},
    {"n_probs": "3"}, {"n_probs": 2.5}, {"n_probs": True},
    {"logit_bias": "x"}, {"logit_bias": 5}, {"logit_bias": [[1]]}, {"logit_bias": [["Hello", "b"]]},
    {"logit_bias": {"15": "x"}}, {"logit_bias": [1, 2]},
    {"samplers": 5}, {"samplers": ["nope"]}, {"samplers": [1]}, {"samplers": "kz"},
    {"dry_multiplier": 0.5, "dry_sequence_breakers": "x"}, {"dry_sequence_breakers": [1]},
    {"dry_sequence_breakers": []},
    {"id_slot": "0"}, {"id_slot": 0.5}, {"t_max_predict_ms": "10"},
    {"mirostat": "2"}, {"repeat_last_n": "64"}, {"typical_p": [1]}, {"post_sampling_probs": "yes"},
]


@pytest.mark.parametrize("path", ["/completion", "/v1/completions"])
@pytest.mark.parametrize("fields", WRONG_TYPES_NATIVE, ids=lambda f: json.dumps(f)[:40])
def test_wrong_type_is_400(client, path, fields):
    if path == "/v1/completions" and "return_tokens" in fields:
        pytest.skip("a native field the OpenAI route does not read")
    body = {**OK_COMPLETION, **fields}
    assert_error(client.post(path, json=body), 400, "invalid_request_error")


WRONG_TYPES_CHAT = [
    # llama.cpp's test_invalid_chat_completion_req
    {"messages": None}, {"messages": "string"}, {"messages": [123]}, {"messages": [{}]},
    {"messages": [{"role": 123}]}, {"messages": [{"role": "system", "content": 123}]},
    {"messages": [{"role": "system", "content": "test"}, {}]},
    {"messages": []}, {"messages": {"role": "user", "content": "Hi"}},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    {"max_tokens": "5"}, {"max_tokens": 2.5}, {"max_completion_tokens": "2"}, {"n": "2"}, {"n": 1.5},
    {"logprobs": "yes"}, {"logprobs": True, "top_logprobs": "5"}, {"stream": "true"},
    {"stream": True, "stream_options": "usage"}, {"temperature": "0"}, {"stop": 3}, {"seed": "42"},
    {"response_format": "json"}, {"response_format": {"type": "sound"}},
    {"response_format": {"type": "json_object", "schema": 123}},
    {"response_format": {"type": "json_object", "schema": {"type": 123}}},
    {"response_format": {"type": "json_object", "schema": {"type": "hiccup"}}},
    {"chat_template_kwargs": "x"}, {"add_generation_prompt": "yes"},
    # no content and no tool_calls: llama-server refuses it; the template must not be what fails
    {"messages": [{"role": "user", "content": None}]},
    # a role no chat format knows (llama-server would render it as a turn of that name)
    {"messages": [{"role": "wizard", "content": "Hi"}]},
    # two assistant messages at the end: nothing to answer, nothing single to continue
    {"messages": [*USER, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]},
    {"continue_final_message": True, "add_generation_prompt": True,
     "messages": [*USER, {"role": "assistant", "content": "Hel"}]},
]


@pytest.mark.parametrize("fields", WRONG_TYPES_CHAT, ids=lambda f: json.dumps(f)[:40])
def test_chat_wrong_type_is_400(client, fields):
    assert_error(client.post("/v1/chat/completions", json={**OK_CHAT, **fields}), 400, "invalid_request_error")


@pytest.mark.parametrize("path,body", [
    ("/tokenize", {}), ("/tokenize", {"content": 5}), ("/tokenize", {"content": ["a"]}),
    ("/tokenize", {"content": None}), ("/tokenize", {"content": "a", "with_pieces": "yes"}),
    ("/tokenize", {"content": "a", "add_special": 1}), ("/tokenize", {"content": "a", "parse_special": "no"}),
    ("/detokenize", {"tokens": "abc"}), ("/detokenize", {"tokens": [1.5]}), ("/detokenize", {"tokens": ["a"]}),
    ("/detokenize", {"tokens": [True]}), ("/detokenize", {"tokens": 5}), ("/detokenize", {"tokens": [[1]]}),
    ("/detokenize", {"tokens": [-1]}), ("/detokenize", {"tokens": [N_VOCAB]}),
    ("/detokenize", {"tokens": [1, 2 ** 40]}),
    ("/apply-template", {}), ("/apply-template", {"messages": "Hi"}), ("/apply-template", {"messages": [1]}),
    ("/apply-template", {"messages": [{"role": "user"}]}),
    ("/apply-template", {"messages": [{"role": "user", "content": None}]}),
])
def test_token_routes_wrong_input_is_400(client, path, body):
    assert_error(client.post(path, json=body), 400, "invalid_request_error")


# -- out of range -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/completion", "/v1/completions"])
@pytest.mark.parametrize("fields", [
    {"top_p": 2}, {"top_p": -0.1}, {"min_p": 1.5}, {"typical_p": 3}, {"xtc_probability": 2},
    {"n_probs": 1000}, {"n_probs": -1}, {"id_slot": 99}, {"id_slot": N_SLOTS}, {"id_slot": -2},
    {"n_predict": -2}, {"n_predict": -100}, {"seed": -5}, {"seed": 2 ** 32}, {"seed": 2 ** 70},
    {"repeat_last_n": -2}, {"mirostat": 3},
    {"dry_allowed_length": -1}, {"dry_penalty_last_n": -2}, {"min_keep": -1}, {"t_max_predict_ms": -1},
    {"prompt": [1, 2, N_VOCAB]}, {"prompt": [-1]}, {"prompt": [2 ** 63]}, {"prompt": ["Hi", N_VOCAB + 7]},
    {"prompt": [[1, 2], [N_VOCAB]]},
], ids=lambda f: json.dumps(f)[:40])
def test_out_of_range_is_400(client, path, fields):
    if path == "/v1/completions" and isinstance(fields.get("prompt"), list) and isinstance(fields["prompt"][0], list):
        pytest.skip("several prompts are a /completion feature")
    if path == "/v1/completions" and fields.get("n_probs", 0) > 0:
        pytest.skip("the OpenAI route takes logprobs, not n_probs (tested below)")
    assert_error(client.post(path, json={**OK_COMPLETION, **fields}), 400, "invalid_request_error")


@pytest.mark.parametrize("fields", [
    {"max_tokens": -2}, {"max_completion_tokens": -5}, {"n": 0}, {"n": -1}, {"n": 10 ** 6},
    {"logprobs": True, "top_logprobs": 1000}, {"logprobs": True, "top_logprobs": -1}, {"top_p": 2},
    {"seed": -5}, {"top_logprobs": 5},  # llama-server: top_logprobs requires logprobs set to true
])
def test_chat_out_of_range_is_400(client, fields):
    assert_error(client.post("/v1/chat/completions", json={**OK_CHAT, **fields}), 400, "invalid_request_error")


def test_v1_completions_logprobs_over_cap(client):
    assert_error(client.post("/v1/completions", json={**OK_COMPLETION, "logprobs": 1000}), 400,
                 "invalid_request_error")


@pytest.mark.parametrize("path,body", [
    ("/completion", {"prompt": ""}), ("/completion", {"prompt": []}), ("/completion", {}),
    ("/completion", {"prompt": None}), ("/v1/completions", {"prompt": ""}), ("/v1/completions", {}),
])
def test_empty_or_missing_prompt_is_400(client, path, body):
    assert_error(client.post(path, json=body), 400, "invalid_request_error")


# -- the context ---------------------------------------------------------------------------------

LONG = "I believe the meaning of life is " * 40  # about 280 tokens: over the 128-token slot


@pytest.mark.parametrize("path,body", [
    ("/completion", {"prompt": LONG, "n_predict": 4}),
    ("/completion", {"prompt": LONG, "n_predict": 4, "stream": True}),
    ("/completion", {"prompt": list(range(1000, 1000 + SLOT_CTX)), "n_predict": 1}),
    ("/v1/completions", {"prompt": LONG, "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}], "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "Book"},
                                           {"role": "user", "content": "What is the best book"}] * 30,
                              "stream": True}),
])
def test_prompt_over_context_is_exceed_context_size_error(client, path, body):
    # a plain 400 even when a stream was asked for: nothing was streamed yet
    err = assert_error(client.post(path, json=body), 400, "exceed_context_size_error")
    assert "exceeds the available context size" in err["message"]
    assert err["n_ctx"] == SLOT_CTX
    assert err["n_prompt_tokens"] >= SLOT_CTX


# -- routes and methods ----------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"), ("POST", "/v1/nope"), ("GET", "/v1/completion"), ("POST", "/v2/chat/completions"),
    ("GET", "/completion/extra"), ("DELETE", "/health"), ("PUT", "/completion"), ("PATCH", "/props"),
    # a known path with another method: llama-server's HTTP library answers 404, not 405
    ("GET", "/completion"), ("GET", "/v1/chat/completions"), ("POST", "/health"), ("POST", "/v1/models"),
    ("GET", "/tokenize"),
])
def test_unknown_route_or_method_is_404(client, method, path):
    r = client.request(method, path, json={} if method != "GET" else None)
    assert_error(r, 404, "not_found_error", "File Not Found")


def test_head_is_get_without_a_body(client):
    r = client.head("/health")
    assert r.status_code == 200 and r.content == b""
    assert client.head("/completion").status_code == 404


# -- disabled endpoints ---------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,body,message", [
    ("GET", "/metrics", None, "This server does not support metrics endpoint. Start it with `--metrics`"),
    ("GET", "/slots", None, "This server does not support slots endpoint. Start it with `--slots`"),
    ("POST", "/embedding", {"content": "a"}, "This server does not support embeddings. Start it with `--embeddings`"),
    ("POST", "/embeddings", {"input": "a"}, "This server does not support embeddings. Start it with `--embeddings`"),
    ("POST", "/v1/embeddings", {"input": "a"},
     "This server does not support embeddings. Start it with `--embeddings`"),
    ("POST", "/rerank", {"query": "a", "documents": ["b"]},
     "This server does not support reranking. Start it with `--reranking`"),
    ("POST", "/v1/rerank", {"query": "a", "documents": ["b"]},
     "This server does not support reranking. Start it with `--reranking`"),
    ("POST", "/props", {}, "This server does not support changing global properties. Start it with `--props`"),
])
def test_disabled_endpoint_is_501(client, method, path, body, message):
    assert_error(client.request(method, path, json=body), 501, "not_supported_error", message)


def test_infill_without_fim_tokens_is_501(client):
    err = assert_error(client.post("/infill", json={"input_prefix": "def f(", "input_suffix": ")"}), 501,
                       "not_supported_error")
    assert err["message"].startswith("Infill is not supported by this model")


# -- grammars and schemas -----------------------------------------------------------------------

@pytest.mark.parametrize("path,fields,says", [
    ("/completion", {"grammar": "root ::= [a-"}, "Unexpected end of input"),
    ("/completion", {"grammar": 'root = "a"'}, "Expected ::="),
    ("/completion", {"grammar": "root ::= undefined-rule"}, "undefined-rule"),
    ("/completion", {"grammar": 'root ::= "unterminated'}, "Unexpected end of input"),
    ("/completion", {"grammar": 'foo ::= "a"'}, "root"),
    ("/completion", {"grammar": 5}, "grammar"),
    ("/completion", {"json_schema": {"type": 123}}, "type"),
    ("/completion", {"json_schema": {"type": "hiccup"}}, "hiccup"),
    ("/completion", {"json_schema": "{}"}, "json_schema"),
    ("/v1/completions", {"json_schema": {"type": "string", "minLength": 5, "maxLength": 2}}, "minLength"),
    ("/v1/chat/completions", {"grammar": "root ::= ("}, "Expected ')'"),
    ("/v1/chat/completions", {"json_schema": {"$ref": "#/nowhere"}}, "/nowhere"),
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 1}}}},
     "type"),
    # a chat request may not have both (on /completion the grammar wins, as in llama-server)
    ("/v1/chat/completions", {"json_schema": {"type": "object"}, "grammar": 'root ::= "a"'}, "grammar"),
])
def test_invalid_grammar_or_schema_is_400(client, path, fields, says):
    base = OK_CHAT if "chat" in path else OK_COMPLETION
    err = assert_error(client.post(path, json={**base, **fields}), 400, "invalid_request_error")
    assert says in err["message"]  # the parser's own words


# -- null is the default -------------------------------------------------------------------------

NULLS_NATIVE = ["n_predict", "temperature", "top_k", "top_p", "min_p", "stop", "stream", "seed", "n_probs",
                "logit_bias", "samplers", "dry_sequence_breakers", "id_slot", "cache_prompt", "return_tokens",
                "grammar", "json_schema", "t_max_predict_ms", "ignore_eos", "mirostat"]
NULLS_CHAT = ["max_tokens", "n", "logprobs", "top_logprobs", "stream", "stream_options", "temperature", "stop",
              "seed", "response_format", "chat_template_kwargs", "add_generation_prompt", "tools"]


@pytest.mark.parametrize("path,body", [
    ("/completion", {"prompt": "Hello", **dict.fromkeys(NULLS_NATIVE)}),
    ("/v1/completions", {"prompt": "Hello", **dict.fromkeys(NULLS_NATIVE), "max_tokens": None, "logprobs": None}),
    ("/v1/chat/completions", {"messages": USER, **dict.fromkeys(NULLS_CHAT)}),
    ("/tokenize", {"content": "Hello", "add_special": None, "parse_special": None, "with_pieces": None}),
])
def test_null_field_means_its_default(client, path, body):
    # llama-server reads a JSON null as "not given"
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text


# -- extreme values that are not errors -------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"n_predict": 2 ** 62}, {"top_k": 2 ** 62}, {"repeat_last_n": 2 ** 40, "repeat_penalty": 1.1},
    {"dry_multiplier": 0.8, "dry_allowed_length": 2 ** 40, "dry_penalty_last_n": 2 ** 40},
    {"min_keep": 2 ** 40, "top_p": 0.5}, {"mirostat": 2, "mirostat_tau": 1e300, "mirostat_eta": 1e300},
    {"dynatemp_range": 1e300, "dynatemp_exponent": 1e300}, {"temperature": 1e300}, {"temperature": -1e300},
    {"logit_bias": [[15, 1e300], [16, -1e300]]}, {"logit_bias": [[2 ** 70, 1.0]]}, {"logit_bias": {"Hello": False}},
    {"presence_penalty": 1e300, "frequency_penalty": -1e300}, {"t_max_predict_ms": 1e300},
    {"top_n_sigma": 1e300}, {"xtc_probability": 1.0, "xtc_threshold": 0.0}, {"n_probs": 100},
    {"seed": 2 ** 32 - 1}, {"stop": ["", "\u0000", "x" * 1000]}, {"samplers": []}, {"samplers": ""},
    {"prompt": "\u0000\ud7ff\ufffd<|im_start|>"}, {"prompt": [0, 0, 0]}, {"prompt": [N_VOCAB - 1]},
])
def test_extreme_but_valid_values_are_served(client, fields):
    """llama-server takes each of these (clamping or ignoring what is out of range): a 200 with a
    normal end, never a 400 or a 500. ignore_eos and a fixed seed make the end certain: the limit."""
    r = client.post("/completion", json={**OK_COMPLETION, "return_tokens": True, "ignore_eos": True, "seed": 7,
                                         **fields})
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out["content"], str) and out["stop_type"] == "limit", out
    if fields.get("n_predict") == 2 ** 62:  # no limit but the slot's: it generates until its context is full
        assert out["truncated"] is True and out["tokens_evaluated"] + out["tokens_predicted"] == SLOT_CTX, out
    else:
        assert out["truncated"] is False and out["tokens_predicted"] == OK_COMPLETION["n_predict"], out
    if fields.get("logit_bias") == [[15, 1e300], [16, -1e300]]:  # a huge bias is a sure choice
        assert out["tokens"] == [15] * OK_COMPLETION["n_predict"], out


# -- fuzz ---------------------------------------------------------------------------------------------

FIELDS = ["prompt", "n_predict", "temperature", "top_k", "top_p", "min_p", "stop", "stream", "seed", "n_probs",
          "logit_bias", "samplers", "dry_multiplier", "dry_sequence_breakers", "id_slot", "cache_prompt",
          "messages", "max_tokens", "n", "logprobs", "top_logprobs", "response_format", "json_schema",
          "grammar", "typical_p", "mirostat", "repeat_penalty", "ignore_eos", "tokens", "content",
          "stream_options", "return_tokens", "t_max_predict_ms", "post_sampling_probs", "min_keep"]
scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.integers(-3, 300)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
fields = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=5)


def check_not_500(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["code"] == r.status_code
    elif r.headers["content-type"].startswith("text/event-stream"):
        for kind, ev in sse_events(r):
            assert kind != "error" or ev["code"] < 500, ev


FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=st.one_of(fields, fields.map(lambda f: {**OK_COMPLETION, **f}),
                      fields.map(lambda f: {**f, **OK_COMPLETION})))
def test_fuzz_completion_never_500(client, body):
    check_not_500(client.post("/completion", json=body))


@FUZZ
@given(body=st.one_of(fields, fields.map(lambda f: {**OK_CHAT, **f}), fields.map(lambda f: {**f, **OK_CHAT})))
def test_fuzz_chat_never_500(client, body):
    check_not_500(client.post("/v1/chat/completions", json=body))


# -- big bodies: llama-server's limit is cpp-httplib's 100 MiB --------------------------------------
# Past it, the answer is a 413 in the error shape, and the client (httpx, or requests as llama.cpp's
# own tests use) reads it: the server reads and drops the rest of the body instead of resetting
# the connection under a client that is still sending.

MIB = 1024 * 1024
TOO_LARGE = {"error": {"code": 413, "message": "Request body too large", "type": "invalid_request_error"}}


def padded_completion(size: int) -> bytes:
    """A /completion body of exactly `size` bytes; the padding is a field no one reads."""
    head, tail = b'{"prompt": "Hello", "n_predict": 1, "padding": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def post_big(kind: str, url: str, body) -> tuple[int, dict]:
    """POST `body` (bytes, or an iterator of bytes: sent chunked) with httpx or requests."""
    import requests

    headers = {"Content-Type": "application/json"}
    if kind == "httpx":
        r = httpx.post(url, content=body, headers=headers, timeout=120)
    else:
        r = requests.post(url, data=body, headers=headers, timeout=120)
    return r.status_code, r.json()


@pytest.mark.parametrize("kind", ["httpx", "requests"])
@pytest.mark.parametrize("size", [64_000_000, 100_000_000])
def test_body_under_100_mib_is_served(server, kind, size):
    status, body = post_big(kind, server.srv.url + "/completion", padded_completion(size))
    assert status == 200, body
    assert body["tokens_predicted"] == 1


@pytest.mark.parametrize("kind", ["httpx", "requests"])
@pytest.mark.parametrize("size", [100 * MIB + 1, 128 * MIB])
def test_body_over_100_mib_is_413_the_client_reads(server, kind, size):
    assert post_big(kind, server.srv.url + "/completion", padded_completion(size)) == (413, TOO_LARGE)


@pytest.mark.parametrize("kind", ["httpx", "requests"])
def test_chunked_body_over_100_mib_is_413_the_client_reads(server, kind):
    piece = b"x" * MIB
    chunks = itertools.chain([b'{"prompt": "'], itertools.repeat(piece, 110), [b'"}'])
    assert post_big(kind, server.srv.url + "/completion", chunks) == (413, TOO_LARGE)


# -- still serving (last) ---------------------------------------------------------------------------

def test_still_serving_after_the_battery(server, client):
    assert server.srv.proc.poll() is None
    assert client.get("/health").json() == {"status": "ok"}
    r = client.post("/completion", json={"prompt": "The capital of France is", "n_predict": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["tokens_predicted"] == 4
    r = client.post("/v1/chat/completions", json={**OK_CHAT, "max_tokens": 3})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 3
