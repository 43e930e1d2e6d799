"""Tool calling end to end on the real SmolLM2 model, through the official `openai` client.

SmolLM2's template knows no tools, so the server uses the generic JSON format: the template is
given the tools as they are (it prints none of them, as llama-server's prompt shows), and the
answer is forced into {"tool_call": ...} or
{"response": ...} by the grammar; the client must get well-formed OpenAI tool calls whose
arguments are JSON matching the function's schema.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests import chat_server

server, client = chat_server.server, chat_server.client  # the shared server's module fixtures

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "description": "Current time in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def _check_call(call, names=tuple(SCHEMAS)):
    assert call.type == "function" and call.function.name in names
    assert isinstance(call.id, str) and len(call.id) >= 8
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[call.function.name])
    return args


def test_required_tool_call(client):
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="required",
                                       max_tokens=60, temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.content is None and len(c.message.tool_calls) == 1
    _check_call(c.message.tool_calls[0])
    assert r.usage.completion_tokens > 0


def test_required_tool_call_streamed(client):
    stream = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="required",
                                            max_tokens=60, temperature=0.7, seed=3, stream=True)
    calls: dict[int, dict] = {}
    finish, chunks = [], list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    for chunk in chunks:
        for ch in chunk.choices:
            if ch.finish_reason:
                finish.append(ch.finish_reason)
                assert ch.delta.content is None and ch.delta.tool_calls is None  # the closing chunk is empty
            for tc in ch.delta.tool_calls or []:
                if tc.index not in calls:  # the first delta of a call carries id, type and name
                    assert tc.id and tc.type == "function" and tc.function.name
                    calls[tc.index] = {"id": tc.id, "name": tc.function.name, "args": ""}
                else:
                    assert tc.id is None and tc.function.name is None
                calls[tc.index]["args"] += tc.function.arguments or ""
    assert finish == ["tool_calls"] and list(calls) == [0]
    call = calls[0]
    jsonschema.validate(json.loads(call["args"]), SCHEMAS[call["name"]])


def test_named_function(client):
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, max_tokens=60, temperature=0,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [t.function.name for t in r.choices[0].message.tool_calls] == ["get_time"]
    _check_call(r.choices[0].message.tool_calls[0])


def test_parallel_calls_carry_model_ids(client):
    # DRY stops the small model from looping inside a call's free-form "id" string (greedy, it can
    # write "get_weather_2023_2024_2024_..." until max_tokens). The prompt is cached first, so the
    # answer does not depend on which tests ran before (a cached prompt can differ in the last bits)
    kw = dict(model="m", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=True, temperature=0)
    client.chat.completions.create(**kw, max_tokens=1)
    r = client.chat.completions.create(**kw, max_tokens=120, extra_body={"dry_multiplier": 0.8})
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and calls
    for call in calls:
        _check_call(call)


def test_auto_answers_in_json_mode(server):
    # generic format: the grammar allows a call or {"response": ...}; greedy, this small model
    # calls a tool even for "Say hello.", and the call comes back as proper OpenAI fields, not as
    # the JSON it was generated as
    with server.client() as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Say hello."}],
                                                 "tools": TOOLS, "max_tokens": 120, "temperature": 0}).json()
    ch = r["choices"][0]
    assert ch["finish_reason"] == "tool_calls", ch
    assert ch["message"]["content"] is None and len(ch["message"]["tool_calls"]) == 1
    call = ch["message"]["tool_calls"][0]["function"]
    jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])
    assert r["usage"]["completion_tokens"] < 120


def test_tool_results_round_trip(client, server):
    first = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="required",
                                           max_tokens=60, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    with server.client() as c:
        prompt = c.post("/apply-template", json={"messages": history, "tools": TOOLS}).json()["prompt"]
    # SmolLM2's template prints the result under its role and not the call, as llama-server's prompt does
    assert prompt.endswith("<|im_start|>assistant\n<|im_end|>\n<|im_start|>tool\n18 degrees and sunny<|im_end|>\n"
                           "<|im_start|>assistant\n") and call.id not in prompt
    r = client.chat.completions.create(model="m", messages=history, tools=TOOLS, tool_choice="required",
                                       max_tokens=80, temperature=0)
    assert r.choices[0].finish_reason == "tool_calls" and r.usage.completion_tokens < 80
    _check_call(r.choices[0].message.tool_calls[0])


def test_tool_choice_none_is_plain_text(client):
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=4,
                                       temperature=0)
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content


@pytest.mark.parametrize("extra,word", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "nope"}}]}, "parameters"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice"),
    ({"tools": TOOLS, "grammar": "root ::= \"x\""}, "grammar"),
    ({"tools": TOOLS, "tool_choice": "maybe"}, "tool_choice"),
    ({"reasoning_format": "loud"}, "reasoning_format"),
])
def test_bad_tool_requests_are_400(server, extra, word):
    with server.client() as c:
        r = c.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 4, **extra})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert word in r.json()["error"]["message"]
