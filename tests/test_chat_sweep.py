"""The /apply-template sweep: every template in llama.cpp's models/templates/ and every conversation of
tests/chat_sweep.py, rendered in-process through the path /apply-template takes (the request decoded,
chat_input, build_plan, the prompt less BOS/EOS with SmolLM2's tokens), equals llama-server's prompt
recorded in tests/fixtures/templates_llamacpp.json (tests/fixtures/record_templates.py), or is one of
KNOWN, each with its reason (the README's list). A few templates also go through a real server.
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from pathlib import Path

import httpx
import msgspec
import pytest

from service.api.protocol_openai import ChatRequest, chat_input
from service.chat import ChatTemplate
from service.chat.plan import build_plan
from service.chat.reasoning import ReasoningFormat
from tests.chat_sweep import CONVERSATIONS, FIXTURE, TOOLS, TEMPLATES, normalise_dates, template_hash
from tests.real_models import tok
from tests.served import module_server

# Why our prompt differs from llama-server's, for the cases listed in _DIFFERENT (README: the same list).
CONTINUE = ("continuing a final assistant message: llama-server writes the reasoning markers its analysis of the "
            "template (a specialised or the automatic parser) finds; ours knows the <think>-style tags the template "
            "text names")
OPEN = ("thinking off after a block the template opens itself: llama-server's analysis finds no reasoning to close "
        "in this template and leaves it open; ours closes it (as llama-server does for R1 Distill Qwen and QwQ)")
ARGS = ("tool call arguments: llama-server's specialised parser hands this template the arguments in its own form "
        "(typed argument tags, Gemma 4's quoting, Ministral's content); ours passes them as the request gives them")
HISTORY = ("an earlier turn's reasoning_content: llama-server's parser for this template keeps (or marks) it; ours "
           "renders what the template itself does with it")
ENABLED = ("enable_thinking: llama-server turns it off by default where its analysis finds no reasoning markers "
           "(Apertus' 'Deliberation: disabled'); ours leaves it on unless the request turns it off")
_DIFFERENT = {
    ("Apertus-8B-Instruct.jinja", ENABLED): ("user", "system_user", "multi_turn", "no_generation_prompt", "tools",
                                             "tool_call_result", "tool_call_answered", "parallel_calls",
                                             "call_with_content", "reasoning", "reasoning_last", "reasoning_effort"),
    ("Apriel-1.6-15b-Thinker-fixed.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("Cohere2MoE.jinja", OPEN): ("thinking_off", "thinking_off_tools"),
    ("GLM-4.7-Flash.jinja", HISTORY): ("reasoning",),
    ("Kimi-K2-Instruct.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("Kimi-K3.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("Kimi-K3.jinja", ARGS): ("tool_call_result", "tool_call_answered", "parallel_calls", "call_with_content"),
    ("LFM2-8B-A1B.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("LFM2.5-8B-A1B.jinja", HISTORY): ("reasoning",),
    ("LFM2.5-Instruct.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("MiniMax-M2.jinja", OPEN): ("thinking_off", "thinking_off_tools"),
    ("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja", HISTORY): ("reasoning",),
    ("NVIDIA-Nemotron-Nano-v2.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("NVIDIA-Nemotron-Nano-v2.jinja", OPEN): ("thinking_off", "thinking_off_tools"),
    ("StepFun3.5-Flash.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("StepFun3.5-Flash.jinja", OPEN): ("thinking_off", "thinking_off_tools"),
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", OPEN): ("thinking_off", "thinking_off_tools"),
    ("deepseek-ai-DeepSeek-V4-Flash-0731.jinja", HISTORY): ("multi_turn", "reasoning"),
    ("deepseek-ai-DeepSeek-V4-Flash-0731.jinja", CONTINUE): ("no_generation_prompt",),
    ("deepseek-ai-DeepSeek-V4.jinja", HISTORY): ("multi_turn", "reasoning"),
    ("deepseek-ai-DeepSeek-V4.jinja", CONTINUE): ("no_generation_prompt",),
    ("google-gemma-4-31B-it-interleaved.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("google-gemma-4-31B-it-interleaved.jinja", ARGS): ("tool_call_result", "tool_call_answered", "parallel_calls",
                                                        "call_with_content"),
    ("google-gemma-4-31B-it.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("google-gemma-4-31B-it.jinja", ARGS): ("tool_call_result", "tool_call_answered", "parallel_calls",
                                            "call_with_content"),
    ("llama-cpp-deepseek-r1.jinja", OPEN): ("thinking_off", "thinking_off_tools"),
    ("llama-cpp-rwkv-world.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("meetkai-functionary-medium-v3.2.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("mistralai-Ministral-3-14B-Reasoning-2512.jinja", ARGS): ("tool_call_result", "tool_call_answered",
                                                               "parallel_calls"),
    ("mistralai-Ministral-3-14B-Reasoning-2512.jinja", HISTORY): ("reasoning",),
    ("moonshotai-Kimi-K2.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("muse-glimmer.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("openai-gpt-oss-120b.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("poolside-Laguna-XS-2.1.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("poolside-Laguna-XS.2.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("tencent-Hy3.jinja", CONTINUE): ("reasoning_last",),
    ("unsloth-mistral-Devstral-Small-2507.jinja", CONTINUE): ("no_generation_prompt", "reasoning_last"),
    ("unsloth-mistral-Devstral-Small-2507.jinja", HISTORY): ("reasoning",),
}
# (template, conversation) -> the reason
KNOWN: dict[tuple[str, str], str] = {(t, c): reason for (t, reason), convs in _DIFFERENT.items() for c in convs}

HTTP_TEMPLATE = "Qwen3.5-4B.jinja"  # Qwen3-Coder XML calls, a thinking block


@lru_cache(maxsize=1)
def recorded() -> dict:
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE.name} not recorded")
    return json.loads(FIXTURE.read_text())


@lru_cache(maxsize=None)
def template(name: str) -> ChatTemplate:
    if not (TEMPLATES / name).exists():  # `make tools` fetches them (scripts/fetch_templates.py)
        pytest.skip(f"llama.cpp's template {name} is not here")
    t = tok("smollm2")
    return ChatTemplate((TEMPLATES / name).read_text(encoding="utf-8"), name="file",
                        bos_token=t.token_text(t.bos_id), eos_token=t.token_text(t.eos_id))


def ours(name: str, body: dict) -> dict:
    """What our /apply-template answers for `body`: {"prompt"} or {"error"}."""
    template(name)  # a skip, not a recorded error, when the template is not here
    try:
        inp = chat_input(msgspec.convert(body, ChatRequest))
        plan = build_plan(template(name), inp, tokenizer=tok("smollm2"), compiler=None,
                          default_reasoning=ReasoningFormat.AUTO, stream=False)
    except Exception as e:  # noqa: BLE001 - the sweep records refusals as llama-server does
        return {"error": str(e)}
    return {"prompt": normalise_dates(plan.rendered.prompt(tok("smollm2")), date.today())}


def _templates():
    if not FIXTURE.exists() or not TEMPLATES.exists():
        return [pytest.param("", marks=pytest.mark.skip(reason="no fixture or no llama.cpp templates"))]
    return sorted(json.loads(FIXTURE.read_text())["templates"])


def compare(name: str, conv: str) -> str | None:
    """None when ours equals llama-server's, else a one-line description of the difference."""
    want = recorded()["templates"][name]["cases"].get(conv)
    if want is None:
        return "not recorded"
    got = ours(name, CONVERSATIONS[conv])
    if "prompt" in want and "prompt" in got:
        if want["prompt"] == got["prompt"]:
            return None
        a, b = want["prompt"], got["prompt"]
        at = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        lo = max(0, at - 40)
        return f"differs at {at}: llama-server {a[lo:at + 80]!r} ours {b[lo:at + 80]!r}"
    if "error" in want and "error" in got:
        return None  # both refuse the conversation (their messages differ by engine)
    return f"llama-server {want!r:.300} ours {got!r:.300}"


def test_fixture_is_current():
    for name, entry in recorded()["templates"].items():
        path = TEMPLATES / name
        if path.exists():
            assert entry["hash"] == template_hash(path.read_text(encoding="utf-8")), f"{name}: re-record"
    assert sorted(recorded()["conversations"]) == sorted(CONVERSATIONS), "re-record: the conversations changed"


@pytest.mark.parametrize("name", _templates())
def test_prompts_equal_llama_server(name):
    unexpected, now_equal = [], []
    for conv in CONVERSATIONS:
        known = KNOWN.get((name, conv))
        diff = compare(name, conv)
        if diff is not None and not known:
            unexpected.append(f"{conv}: {diff}")
        elif diff is None and known:
            now_equal.append(conv)
    assert not unexpected, "\n".join(unexpected)
    assert not now_equal, f"now equal to llama-server: drop {now_equal} from KNOWN"


served_server = module_server("served_server", "--jinja", "--chat-template-file", str(TEMPLATES / HTTP_TEMPLATE))


@pytest.fixture(scope="module")
def served(request):
    template(HTTP_TEMPLATE)  # without the file the server would refuse to start: a skip instead
    return request.getfixturevalue("served_server")


def test_http_apply_template_is_the_in_process_path(served):
    for conv in ("tools", "parallel_calls", "reasoning_last", "thinking_off"):
        r = httpx.post(served.url + "/apply-template", json=CONVERSATIONS[conv], timeout=30)
        assert r.status_code == 200, r.text
        assert normalise_dates(r.json()["prompt"], date.today()) == ours(HTTP_TEMPLATE, CONVERSATIONS[conv])["prompt"]
        assert ours(HTTP_TEMPLATE, CONVERSATIONS[conv]) == recorded()["templates"][HTTP_TEMPLATE]["cases"][conv]


def test_readme_lists_the_differences():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Chat templates against llama-server"):]
    for name, reason in {(t, r) for t, r in _DIFFERENT}:
        assert f"`{name.removesuffix('.jinja')}`" in section and reason in section, name
    assert f"{980 - len(KNOWN)} of 980 cases are equal" in section


def test_openai_client_gets_forced_xml_calls(served):
    # the tiny model calls no tool by itself: tool_choice forces one, in the XML the template teaches
    import openai

    client = openai.OpenAI(base_url=served.url + "/v1", api_key="none", timeout=120)
    kw = dict(model="m", messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=TOOLS,
              tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=48, temperature=0,
              extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    r = client.chat.completions.create(**kw)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments), dict)
    deltas = [tc for chunk in client.chat.completions.create(**kw, stream=True) for ch in chunk.choices
              for tc in ch.delta.tool_calls or []]
    assert {tc.index for tc in deltas} == {0} and deltas[0].id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in deltas)) == json.loads(call.function.arguments)
