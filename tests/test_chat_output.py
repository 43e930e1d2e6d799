"""service/chat/output.py: model outputs parsed as llama.cpp's chat tests say (tests/fixtures/
chat_parse_llamacpp.json: Qwen3-Coder XML calls, Qwen3.5 with thinking, gpt-oss harmony channels,
Hermes 2 Pro, QwQ), through the template file's own plan: whole and streamed alike, never a
half-parsed call as content; and the grammars that force a call in what the model writes."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from service.chat import ChatTemplate
from service.chat.output import OutputStream, final_message
from service.chat.plan import ChatInput, build_plan
from service.chat.reasoning import ReasoningFormat
from service.chat import toolcall_families
from service.chat.toolcall_formats import ToolFormat
from service.chat.tools import ToolChoice, ToolRequest
from tests.chat_sweep import TEMPLATES

DATA = json.loads((Path(__file__).parent / "fixtures" / "chat_parse_llamacpp.json").read_text())
USER = [{"role": "user", "content": "Hello"}]


@lru_cache(maxsize=None)
def template(name: str) -> ChatTemplate:
    if not (TEMPLATES / name).exists():
        pytest.skip("llama.cpp's templates are not here")
    return ChatTemplate((TEMPLATES / name).read_text(encoding="utf-8"), name="file", bos_token="<s>", eos_token="</s>")


def plan_for(case: dict, compiler=None, tokenizer=None, choice=ToolChoice.AUTO):
    funcs = [{"name": n, "parameters": DATA["tools"][n]} for n in case["tools"]]
    tools = ToolRequest([{"type": "function", "function": f} for f in funcs], funcs, choice,
                        case.get("parallel", False)) if funcs else None
    inp = ChatInput(USER, tools=tools, reasoning_format=ReasoningFormat(case.get("reasoning_format", "auto")),
                    template_kwargs={"enable_thinking": case.get("enable_thinking", True)})
    return build_plan(template(case["template"]), inp, tokenizer=tokenizer, compiler=compiler,
                      default_reasoning=ReasoningFormat.AUTO, stream=True)


def _calls(msg) -> list:
    return [[c.name, json.loads(c.arguments)] for c in msg.tool_calls]


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: f"{c['template']}:{c['output'][:40]!r}")
def test_llama_cpp_outputs_parse(case):
    plan = plan_for(case)
    framed = case["format"] == "GPT-OSS" or toolcall_families.framed(case["format"])  # read even without tools
    assert plan.spec.format.value == (case["format"] if case["tools"] or framed else ToolFormat.CONTENT_ONLY.value)
    want = case["expect"]
    msg = final_message(plan.spec, case["output"])
    assert (msg.content, msg.reasoning_content, _calls(msg)) == (want["content"], want["reasoning"], want["tool_calls"])
    assert all(c.id for c in msg.tool_calls)
    if "ids" in want:  # the ids the model wrote (Kimi K2's functions.<name>:<n>) are the calls' ids
        assert [c.id for c in msg.tool_calls] == want["ids"]
    # streamed a few characters at a time: the deltas add up to the same message, calls get their
    # index in order and an id, and no content delta carries any part of a call
    stream, content, reasoning, calls = OutputStream(plan.spec), "", "", {}
    text = case["output"]
    deltas = [d for i in range(0, len(text), 3) for d in stream.feed(text[i:i + 3])]
    final, last = stream.finish(text)
    for d in [*deltas, *last]:
        content += d.content
        reasoning += d.reasoning
        if d.tool_index >= 0:
            entry = calls.setdefault(d.tool_index, {"name": "", "arguments": "", "id": ""})
            entry["name"] += d.tool_name
            entry["arguments"] += d.tool_args
            entry["id"] = entry["id"] or d.tool_id
    assert (content, reasoning) == (want["content"], want["reasoning"])
    for part in ("<function=", "<tool_call>", "<parameter", "to=functions", "<|message|>", "<|tool_call_begin|>",
                 "<arg_key>", ">>>", "<|START_ACTION|>", "<|START_RESPONSE|>",
                 "<|tool_call_start|>", "<minimax:tool_call>", "<|tool_call|>", "<|tool_call>call:",
                 "[TOOL_CALLS]", "[ARGS]", "｜DSML｜", "<|open|>", "<|close|>", "<|START_TEXT|>",
                 "<|function_call|>", "function call<|role_sep|>",
                 "<function name=", "<param name=",
                 "]<]minimax[>[", "<atem:invoke", "<|role_end|>"):
        assert part not in content or part in want["content"], part
    assert sorted(calls) == list(range(len(want["tool_calls"])))
    assert [[calls[i]["name"], json.loads(calls[i]["arguments"])] for i in sorted(calls)] == want["tool_calls"]
    assert [calls[i]["id"] for i in sorted(calls)] == [c.id for c in final.tool_calls] and all(
        calls[i]["id"] for i in calls)


def test_partial_call_is_held_back():
    case = next(c for c in DATA["cases"] if c["output"].startswith("Let me call it."))
    spec = plan_for(case).spec
    stream = OutputStream(spec)
    sent = [d for piece in ("Let me call it.\n<func", "tion=special_function>\n<parameter=arg1>\n1")
            for d in stream.feed(piece)]
    assert "".join(d.content for d in sent) == "Let me call it."
    named = [d for d in sent if d.tool_index >= 0]
    assert [d.tool_name for d in named if d.tool_name] == ["special_function"]
    assert not "".join(d.tool_args for d in named).endswith("1")  # the unclosed parameter is not sent


@pytest.fixture(scope="module")
def smol():
    from service.gguf_reader import read_gguf
    from service.sampling import GrammarCompiler
    from service.tokenizer import Tokenizer
    from tests.server_proc import SMOLLM2

    if not SMOLLM2.exists():
        pytest.skip("SmolLM2 not present (make models)")
    tok = Tokenizer.from_metadata(read_gguf(str(SMOLLM2)).metadata)
    return tok, GrammarCompiler(tok)


def _accepts(tok, constraint, text: str) -> bool:
    for t in tok.tokenize(text, add_special=False, parse_special=True):
        if not constraint.allows(t):
            return False
        constraint.accept(t)
    return True


EDIT = next(c for c in DATA["cases"] if c["output"].startswith("<tool_call>\n<function=edit>"))


@pytest.mark.parametrize("choice", [ToolChoice.REQUIRED, ToolChoice.AUTO])
def test_grammar_takes_what_the_model_writes(smol, choice):
    tok, gc = smol
    case = {**EDIT, "tools": ["edit", "tool_2req_4opt"]}
    call = case["output"]
    plan = plan_for(case, gc, tok, choice)
    assert plan.spec.format is ToolFormat.QWEN3_CODER and plan.constraint is not None
    assert _accepts(tok, plan_for(case, gc, tok, choice).constraint, call)  # strings end at </parameter>
    typed = "<tool_call>\n<function=tool_2req_4opt>\n<parameter=req1>\na < b\n</parameter>\n" \
            "<parameter=req2>\n42\n</parameter>\n</function>\n</tool_call>"
    assert _accepts(tok, plan_for(case, gc, tok, choice).constraint, typed)
    assert not _accepts(tok, plan_for(case, gc, tok, choice).constraint,
                        typed.replace("\n42\n", "\nforty-two\n"))  # an integer parameter is JSON
    assert not _accepts(tok, plan_for(case, gc, tok, choice).constraint, call.replace("=edit>", "=delete>"))
    free = _accepts(tok, plan_for(case, gc, tok, choice).constraint, "Sure, one moment.")
    assert free is (choice is ToolChoice.AUTO)  # a required call starts at the first token


@pytest.mark.parametrize("choice", [ToolChoice.REQUIRED, ToolChoice.AUTO])
def test_harmony_grammar_takes_what_gpt_oss_writes(smol, choice):
    tok, gc = smol
    case = next(c for c in DATA["cases"] if "to=functions.edit_bool" in c["output"])
    plan = plan_for(case, gc, tok, choice)
    assert plan.spec.format is ToolFormat.GPT_OSS and plan.constraint is not None
    call = case["output"] + "<|call|>"
    assert _accepts(tok, plan_for(case, gc, tok, choice).constraint, call)
    assert not _accepts(tok, plan_for(case, gc, tok, choice).constraint, call.replace("edit_bool", "delete"))
    assert not _accepts(tok, plan_for(case, gc, tok, choice).constraint, call.replace("false}", "\"no\"}"))
    free = _accepts(tok, plan_for(case, gc, tok, choice).constraint, "<|channel|>final<|message|>Sure.")
    assert free is (choice is ToolChoice.AUTO)


@pytest.mark.parametrize("template_name", ["llama-cpp-deepseek-r1.jinja", "deepseek-ai-DeepSeek-V3.1.jinja"])
def test_deepseek_grammar_takes_what_the_model_writes(smol, template_name):
    tok, gc = smol
    case = next(c for c in DATA["cases"] if c["template"] == template_name and c["tools"])
    case = {**case, "tools": ["get_time", "special_function"], "enable_thinking": False}
    plan = plan_for(case, gc, tok, ToolChoice.REQUIRED)
    assert plan.spec.format.value == case["format"] and plan.constraint is not None
    call = case["output"].removeprefix("</think>")
    assert _accepts(tok, plan_for(case, gc, tok, ToolChoice.REQUIRED).constraint, call)
    other = "special_function" if "get_time" in call else "get_time"
    named = call.replace("get_time" if other == "special_function" else "special_function", "nothing")
    assert not _accepts(tok, plan_for(case, gc, tok, ToolChoice.REQUIRED).constraint, named)
    assert not _accepts(tok, plan_for(case, gc, tok, ToolChoice.REQUIRED).constraint, "Hello")
    assert _accepts(tok, plan_for(case, gc, tok, ToolChoice.AUTO).constraint, "Hello")
