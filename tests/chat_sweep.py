"""The conversations of the /apply-template sweep (tests/test_chat_sweep.py): each a request body
that both llama-server and llamajit render through every template in llama.cpp's models/templates/.
The recorder (tests/fixtures/record_templates.py) posts them to llama-server; the test renders them
in-process and compares. Dates that templates print are normalised on both sides (DATE_FORMATS).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

# llama.cpp's models/templates/: where `make tools` puts them (scripts/fetch_templates.py), else an
# extracted sdist where ../shared/tools/build-llama-server leaves it
_FETCHED = Path(__file__).resolve().parent.parent / ".tools" / "llama.cpp-templates"
_PEER = (Path.home() / ".cache" / "llamacpp-peer" / "src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
         / "models" / "templates")
TEMPLATES = _FETCHED if _FETCHED.exists() or not _PEER.exists() else _PEER
FIXTURE = Path(__file__).parent / "fixtures" / "templates_llamacpp.json"
DATE_FORMATS = ("%Y-%m-%d", "%d %b %Y", "%B %d, %Y", "%d %B %Y", "%b %d %Y")

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city's name."},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "python", "description": "Runs Python code and returns what it prints.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}},
]


def _call(cid: str, name: str, args: dict) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


USER = {"role": "user", "content": "What is the weather in Paris?"}
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CALL = {"role": "assistant", "content": None,
        "tool_calls": [_call("call00001", "get_weather", {"city": "Paris", "unit": "celsius"})]}
RESULT = {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "{\"temperature\": 21}"}
PARALLEL = {"role": "assistant", "content": None,
            "tool_calls": [_call("call00001", "get_weather", {"city": "Paris"}),
                           _call("call00002", "get_weather", {"city": "Rome"})]}
RESULTS2 = [RESULT, {"role": "tool", "tool_call_id": "call00002", "name": "get_weather", "content": "{\"temperature\": 25}"}]
ANSWER = {"role": "assistant", "content": "It is 21 degrees in Paris."}
MULTI = [SYSTEM, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
         USER]

CONVERSATIONS: dict[str, dict] = {
    "user": {"messages": [USER]},
    "system_user": {"messages": [SYSTEM, USER]},
    "multi_turn": {"messages": MULTI},
    "no_generation_prompt": {"messages": [*MULTI, ANSWER], "add_generation_prompt": False},
    "tools": {"messages": [SYSTEM, USER], "tools": TOOLS},
    "tool_call_result": {"messages": [USER, CALL, RESULT], "tools": TOOLS},
    "tool_call_answered": {"messages": [USER, CALL, RESULT, ANSWER, {"role": "user", "content": "And Rome?"}],
                           "tools": TOOLS},
    "parallel_calls": {"messages": [USER, PARALLEL, *RESULTS2], "tools": TOOLS},
    "call_with_content": {"messages": [USER, {**CALL, "content": "Let me check."}, RESULT], "tools": TOOLS},
    "reasoning": {"messages": [USER, {"role": "assistant", "content": "It is sunny.",
                                      "reasoning_content": "The user wants the weather."},
                               {"role": "user", "content": "Thanks!"}]},
    "reasoning_last": {"messages": [USER, {"role": "assistant", "content": "It is sunny.",
                                           "reasoning_content": "The user wants the weather."}],
                       "add_generation_prompt": False},
    "thinking_off": {"messages": [USER], "chat_template_kwargs": {"enable_thinking": False}},
    "thinking_off_tools": {"messages": [USER], "tools": TOOLS, "chat_template_kwargs": {"enable_thinking": False}},
    "reasoning_effort": {"messages": [SYSTEM, USER], "reasoning_effort": "high"},
}


def template_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def normalise_dates(text: str, day: date) -> str:
    for fmt in DATE_FORMATS:
        text = text.replace(day.strftime(fmt), "<DATE>")
    return text
