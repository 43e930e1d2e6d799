"""OpenAI Responses API on the real SmolLM2 model, through the official `openai` client: text
and item input, instructions, streaming events, usage, function calls and their outputs."""

from __future__ import annotations

import json

import jsonschema
import openai
import msgspec
import pytest

from service.api.errors import ApiError
from service.api.protocol import decode
from service.api.protocol_responses import ResponsesRequest
from tests import chat_server


server, client = chat_server.server, chat_server.client  # the shared server's module fixtures

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather", "parameters": WEATHER}]


def to_chat(body: dict) -> dict:
    """The chat request a Responses body converts into, as plain JSON values."""
    return msgspec.to_builtins(decode(msgspec.json.encode(body), ResponsesRequest).to_chat())


def test_text_input(client):
    r = client.responses.create(model="m", input="Say hello.", instructions="You are terse.", max_output_tokens=8,
                                temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.output_text
    assert r.status in ("completed", "incomplete")
    assert r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 8
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    msg = [o for o in r.output if o.type == "message"][0]
    assert msg.role == "assistant" and msg.content[0].type == "output_text"


def test_streamed_events(client):
    # warm the prompt cache first, so that each answer below reads the prompt the same way (a
    # prompt evaluated whole can differ from a cached one in the last bits, and so at a near-tie)
    client.responses.create(model="m", input="Say hello.", max_output_tokens=1, temperature=0)
    plain = client.responses.create(model="m", input="Say hello.", max_output_tokens=8, temperature=0)
    events = list(client.responses.create(model="m", input="Say hello.", max_output_tokens=8, temperature=0,
                                          stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == plain.output_text == events[-1].response.output_text
    assert events[-1].response.usage.output_tokens == plain.usage.output_tokens
    with client.responses.stream(model="m", input="Say hello.", max_output_tokens=8, temperature=0) as s:
        for _ in s:
            pass
        assert s.get_final_response().output_text == text


def test_items_and_function_calls(client):
    r = client.responses.create(model="m", input=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
                                tool_choice="required", max_output_tokens=60, temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id.startswith("fc_")
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
    follow = [{"role": "user", "content": "Weather in Paris?"},
              {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
               "arguments": calls[0].arguments},
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 20 C"}]
    again = client.responses.create(model="m", input=follow, tools=TOOLS, max_output_tokens=6, temperature=0)
    assert again.status in ("completed", "incomplete")
    stream = client.responses.create(model="m", input="Weather in Paris?", tools=TOOLS, tool_choice="required",
                                     max_output_tokens=60, temperature=0, stream=True)
    events = list(stream)
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
    assert len(added) == 1 and added[0].item.name == "get_weather"
    done = events[-1].response.output[-1]
    assert done.type == "function_call" and done.arguments == args and done.call_id == added[0].item.call_id
    jsonschema.validate(json.loads(args), WEATHER)


def test_raw_stream_framing(server):
    with server.client() as c:
        r = c.post("/v1/responses", json={"input": "Hi", "max_output_tokens": 3, "stream": True})
    blocks = [b for b in r.text.split("\n\n") if b.strip()]
    assert all(b.startswith("event: response.") and "\ndata: {" in b for b in blocks)
    assert all(json.loads(b.split("\ndata: ", 1)[1])["type"] == b.split("\n")[0][len("event: "):] for b in blocks)


def test_bad_requests_are_400(client):
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        client.responses.create(model="m", input="x", previous_response_id="resp_1", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError, match="input"):
        client.responses.create(model="m", input=[{"type": "mystery"}], max_output_tokens=2)


def test_conversion():
    chat = to_chat({"instructions": "Be brief.", "input": [
        {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "fc_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "fc_1", "output": "done"}],
        "tools": TOOLS, "tool_choice": {"type": "function", "name": "get_weather"}, "max_output_tokens": 7,
        "text": {"format": {"type": "json_schema", "name": "x", "schema": WEATHER}}})
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "rules"}]},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "calling",
         "tool_calls": [{"id": "fc_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "fc_1", "content": "done"}]
    assert chat["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                               "parameters": WEATHER}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["max_tokens"] == 7 and chat["response_format"]["json_schema"]["schema"] == WEATHER
    with pytest.raises(ApiError):
        to_chat({"input": 3})
