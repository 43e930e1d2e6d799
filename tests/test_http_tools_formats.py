"""Tool calls in a format with a module of its own, end to end: SmolLM2 served with llama.cpp's
Kimi K2 Thinking template (--chat-template-file), a call forced by tool_choice (the tiny model
calls none by itself), and the official `openai` client reading tool_calls, whole and streamed.
One server start: the other formats' parsers and grammars are the same code paths, tested
without a server (test_toolcall_*.py, test_chat_output.py)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.chat_sweep import TEMPLATES
from tests.server_proc import ServerProcess

# enums keep the greedy tiny model from writing a string until max_tokens (and the test short)
WEATHER = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris for the next 3 days?"}]


KIMI = TEMPLATES / "Kimi-K2-Thinking.jinja"


@pytest.fixture(scope="module")
def served():
    if not KIMI.exists():
        pytest.skip("llama.cpp's templates are not here")
    s = ServerProcess("-c", "512", "-np", "1", "--jinja", "--chat-template-file", str(KIMI))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def test_openai_client_gets_forced_calls(served):
    import openai

    client = openai.OpenAI(base_url=served.url + "/v1", api_key="none", timeout=120)
    kw = dict(model="m", messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}},
              max_tokens=80, temperature=0)
    r = client.chat.completions.create(**kw)
    assert r.choices[0].finish_reason == "tool_calls", r.choices[0].message
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].message.content is None  # nothing but the call: no blank content beside it
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    assert call.id.startswith("functions.get_weather:")  # the model numbers its calls: the id it is shown again
    deltas = [tc for chunk in client.chat.completions.create(**kw, stream=True) for ch in chunk.choices
              for tc in ch.delta.tool_calls or []]
    assert {tc.index for tc in deltas} == {0} and deltas[0].id and deltas[0].function.name == "get_weather"
    assert [tc.id for tc in deltas[1:]] == [None] * (len(deltas) - 1)
    assert json.loads("".join(tc.function.arguments or "" for tc in deltas)) == json.loads(call.function.arguments)
