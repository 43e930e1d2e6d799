"""Anthropic Messages API on the real SmolLM2 model, through the official `anthropic` client
(streamed and not, with tools), plus count_tokens, the request conversion and the error shape."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import msgspec
import pytest

from service.api.errors import ApiError
from service.api.protocol import decode
from service.api.protocol_anthropic import MessagesRequest
from tests.chat_server import shared_server


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER}]
HI = [{"role": "user", "content": "Say hello in three words."}]
# This client version has no sampling parameters: they go as extra fields.
GREEDY = {"temperature": 0}


def _warm(client) -> str:
    """Answer HI once so that the prompt is cached: requests that follow evaluate it alike (a cached
    and an uncached prompt may differ in the last bits, and so in a greedy choice)."""
    return client.messages.create(model="m", max_tokens=8, messages=HI, extra_body=GREEDY).content[0].text


@pytest.fixture(scope="module")
def server():
    return shared_server()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0, timeout=120)


def to_chat(body: dict) -> dict:
    """The chat request a Messages body converts into, as plain JSON values."""
    return msgspec.to_builtins(decode(msgspec.json.encode(body), MessagesRequest).to_chat())


def test_message(client):
    # greedy, the answer ends by itself after 8 tokens (its end-of-turn token counted): end_turn
    m = client.messages.create(model="m", max_tokens=40, system="You are terse.", messages=HI, extra_body=GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"] and m.content[0].text
    assert m.stop_reason == "end_turn" and m.stop_sequence is None and m.usage.output_tokens < 40
    assert m.usage.input_tokens > 5
    # cut short by max_tokens: the same text's start, and max_tokens
    short = client.messages.create(model="m", max_tokens=3, system="You are terse.", messages=HI, extra_body=GREEDY)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    assert m.content[0].text.startswith(short.content[0].text)


def test_message_streamed(client):
    _warm(client)
    with client.messages.stream(model="m", max_tokens=8, messages=HI, extra_body=GREEDY) as s:
        kinds = [ev.type for ev in s]
        final = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    plain = client.messages.create(model="m", max_tokens=8, messages=HI, extra_body=GREEDY)
    assert final.content[0].text == plain.content[0].text  # the same greedy answer either way
    assert final.stop_reason == plain.stop_reason and final.usage.output_tokens == plain.usage.output_tokens


def test_tool_use(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    m = client.messages.create(model="m", max_tokens=60, tools=TOOLS, tool_choice={"type": "any"}, messages=ask,
                               extra_body=GREEDY)
    assert m.stop_reason == "tool_use"
    use = [b for b in m.content if b.type == "tool_use"]
    assert len(use) == 1 and use[0].name == "get_weather" and use[0].id
    jsonschema.validate(use[0].input, WEATHER)
    with client.messages.stream(model="m", max_tokens=60, tools=TOOLS, messages=ask, extra_body=GREEDY,
                                tool_choice={"type": "tool", "name": "get_weather"}) as s:
        kinds = [ev.type for ev in s]
        streamed = s.get_final_message()
    assert "input_json" in kinds  # the arguments arrived as input_json_delta pieces
    assert streamed.stop_reason == "tool_use" and streamed.content[-1].type == "tool_use"
    jsonschema.validate(streamed.content[-1].input, WEATHER)
    # the result goes back as a tool_result block and the conversation continues
    follow = [*ask, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0].id, "content": "Sunny, 20 C"}]}]
    n = client.messages.count_tokens(model="m", messages=follow, tools=TOOLS)
    assert n.input_tokens > client.messages.count_tokens(model="m", messages=ask, tools=TOOLS).input_tokens
    # greedy, this small model reads the result and asks for the weather in Paris again
    again = client.messages.create(model="m", max_tokens=80, tools=TOOLS, messages=follow, extra_body=GREEDY)
    assert again.stop_reason == "tool_use" and again.usage.output_tokens < 80
    (block,) = again.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}


def test_stop_sequence(client):
    _warm(client)
    plain = client.messages.create(model="m", max_tokens=8, messages=HI, extra_body=GREEDY).content[0].text
    # a stop string that first occurs after the start (a word if the answer has one that does):
    # the text is cut at its first occurrence, even mid-word
    pieces = [*plain.split()[1:], *(plain[i:i + 3] for i in range(1, len(plain) - 2))]
    stop = next(p for p in pieces if p.strip() and plain.index(p) > 0)
    m = client.messages.create(model="m", max_tokens=8, messages=HI, extra_body=GREEDY, stop_sequences=[stop])
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    assert m.content[0].text == plain[:plain.index(stop)]


def test_count_tokens_equals_usage(client):
    n = client.messages.count_tokens(model="m", system="You are terse.", messages=HI)
    m = client.messages.create(model="m", max_tokens=1, system="You are terse.", messages=HI)
    # usage splits the prompt, as llama-server does, into tokens read from the cache and the rest
    assert n.input_tokens == m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)


def test_errors_use_anthropic_shape(server, client):
    with server.client() as c:
        r = c.post("/v1/messages", json={"model": "m", "max_tokens": 4, "messages": [{"role": "robot", "content": "x"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": 'messages[0].role: expected "user" or "assistant"'}}
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="m", max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
    assert "not supported" in str(e.value)


def test_conversion_matches_llama_server():
    chat = to_chat({"system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                 {"role": "assistant", "content": [
                                     {"type": "text", "text": "calling"},
                                     {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}]},
                                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                               "content": [{"type": "text", "text": "42"}]}]}],
                    "tools": TOOLS, "tool_choice": {"type": "any"}, "stop_sequences": ["END"], "top_k": 5})
    assert chat["messages"] == [
        {"role": "system", "content": "AB"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "calling"}],
         "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "42"}]
    assert chat["tools"][0]["function"] == {"name": "get_weather", "description": "Current weather in a city",
                                            "parameters": WEATHER}
    assert chat["tool_choice"] == "required" and chat["stop"] == ["END"] and chat["max_tokens"] == 4096
    assert chat["top_k"] == 5 and json.loads(chat["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {"x": 1}
    with pytest.raises(ApiError, match="max_tokens"):
        to_chat({"messages": HI, "max_tokens": 0})
