"""Thinking blocks split into reasoning_content: unit tests of the split (whole, streamed, per
format, model-specific tags), then a real server whose template opens the thinking block."""

from __future__ import annotations

import json

import openai
import pytest

from service.chat.output import OutputSpec, OutputStream, final_message, parse_output
from service.chat.reasoning import ReasoningFormat, ThinkTags, forced_open, reasoning_format, split_reasoning, tags_for
from service.chat.toolcall_formats import ToolFormat
from tests.server_proc import ServerProcess, sse_events

R = ReasoningFormat
THINK = ThinkTags()


@pytest.mark.parametrize("text,reasoning,content", [
    ("<think>Let me see.</think>The answer is 4.", "Let me see.", "The answer is 4."),
    ("<think>\n  2 + 2 = 4  \n</think>\n\nFour.", "2 + 2 = 4", "Four."),
    ("<think>unclosed thoughts", "unclosed thoughts", ""),
    ("<think></think>Direct.", "", "Direct."),
    ("No thinking here.", "", "No thinking here."),
    (" <think>not at the start</think>", "", " <think>not at the start</think>"),
])
def test_split_whole(text, reasoning, content):
    for fmt in (R.AUTO, R.DEEPSEEK, R.DEEPSEEK_LEGACY):  # legacy splits too when not streaming
        msg = parse_output(OutputSpec(reasoning=fmt), text, partial=False)
        assert (msg.reasoning_content, msg.content) == (reasoning, content)


def test_none_keeps_everything_in_content():
    msg = parse_output(OutputSpec(reasoning=R.NONE), "<think>x</think>y", partial=False)
    assert (msg.reasoning_content, msg.content) == ("", "<think>x</think>y")


def test_forced_open_block():
    assert forced_open("<|im_start|>assistant\n<think>\n", THINK)
    assert not forced_open("<|im_start|>assistant\n", THINK)
    spec = OutputSpec(reasoning=R.AUTO, forced_open=True)
    msg = parse_output(spec, "I should greet.\n</think>\nHello!", partial=False)
    assert (msg.reasoning_content, msg.content) == ("I should greet.", "Hello!")
    assert parse_output(spec, "still thinking", partial=False).reasoning_content == "still thinking"


@pytest.mark.parametrize("source,tags", [
    ("{{ '[THINK]' }}", ThinkTags("[THINK]", "[/THINK]")),
    ("<|START_THINKING|>", ThinkTags("<|START_THINKING|>", "<|END_THINKING|>")),
    ("<seed:think>", ThinkTags("<seed:think>", "</seed:think>")),
    ("{{ messages }}", THINK),
])
def test_model_specific_tags(source, tags):
    assert tags_for(source) == tags
    msg = parse_output(OutputSpec(tags=tags), f"{tags.open}plan{tags.close}done", partial=False)
    assert (msg.reasoning_content, msg.content) == ("plan", "done")


def test_reasoning_format_names():
    assert [reasoning_format(n) for n in ("none", "auto", "deepseek", "deepseek-legacy")] == list(R)
    with pytest.raises(ValueError, match="^reasoning_format: expected one of"):
        reasoning_format("r1")


def _stream(spec: OutputSpec, text: str, step: int = 3):
    out = OutputStream(spec)
    deltas = []
    for i in range(0, len(text), step):
        deltas += out.feed(text[i:i + step])
    msg, last = out.finish(text)
    return msg, deltas + last


@pytest.mark.parametrize("step", [1, 2, 5])
def test_streamed_reasoning_deltas(step):
    text = "<think>\nFirst, recall facts. Then answer.\n</think>\n\nParis is the capital."
    msg, deltas = _stream(OutputSpec(reasoning=R.DEEPSEEK), text, step)
    assert "".join(d.reasoning for d in deltas) == msg.reasoning_content == "First, recall facts. Then answer."
    assert "".join(d.content for d in deltas) == msg.content == "Paris is the capital."
    assert all("<" not in d.reasoning and "<" not in d.content for d in deltas)  # tags never leak out
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not d.reasoning for d in deltas[first_content:])  # thoughts come first


def test_legacy_stream_keeps_thoughts_inline():
    text = "<think>hmm</think>Yes."
    msg, deltas = _stream(OutputSpec(reasoning=R.DEEPSEEK_LEGACY, in_content=True), text, 2)
    assert "".join(d.content for d in deltas) == msg.content == "<think>hmm</think>Yes."
    assert not any(d.reasoning for d in deltas)


def test_partial_opening_tag_is_held_back():
    assert split_reasoning("<thi", THINK, R.AUTO, partial=True).rest == ""
    assert split_reasoning("<thi", THINK, R.AUTO, partial=False).rest == "<thi"
    sp = split_reasoning("<think>abc</thi", THINK, R.AUTO, partial=True)
    assert (sp.reasoning, sp.rest) == ("abc", "")


def test_thinking_then_tool_call():
    text = ('<think>The user wants weather.</think>\n<tool_call>\n{"name": "get_weather", '
            '"arguments": {"city": "Paris"}}\n</tool_call>')
    msg = final_message(OutputSpec(ToolFormat.HERMES_2_PRO), text)
    assert msg.reasoning_content == "The user wants weather." and msg.content == ""
    assert [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == [("get_weather", {"city": "Paris"})]
    streamed, deltas = _stream(OutputSpec(ToolFormat.HERMES_2_PRO), text, 4)
    assert "".join(d.reasoning for d in deltas) == "The user wants weather."
    assert "".join(d.tool_args for d in deltas) == streamed.tool_calls[0].arguments


# -- a real server whose template leaves the thinking block open ------------------------------------

OPEN_THINK = ("{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor -%}"
              "{%- if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("tmpl") / "think.jinja"
    path.write_text(OPEN_THINK)
    srv = ServerProcess("-c", "1024", "-np", "1", "--chat-template-file", str(path)).wait_ready()
    yield srv
    srv.stop()


# Without the prompt cache, equal requests are evaluated alike and so generate alike.
CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0, "cache_prompt": False}


def test_server_splits_forced_open_thoughts(server):
    with server.client() as c:
        r = c.post("/v1/chat/completions", json=CHAT).json()
        raw = c.post("/v1/chat/completions", json={**CHAT, "reasoning_format": "none"}).json()
    text = raw["choices"][0]["message"]["content"]  # same seed, same tokens: the unsplit text
    msg = r["choices"][0]["message"]
    # unsplit, the content starts with the tag the prompt opened, as llama-server's does
    assert text.startswith("<think>") and msg["reasoning_content"] == text.split("</think>")[0][7:].strip()
    assert "reasoning_content" not in raw["choices"][0]["message"]


def test_server_streams_reasoning_deltas(server):
    with server.client() as c:
        whole = c.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]
        ev = sse_events(c.post("/v1/chat/completions", json={**CHAT, "stream": True}))
    deltas = [e[1]["choices"][0]["delta"] for e in ev if e[0] == "data" and e[1]["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == whole["reasoning_content"]
    assert "".join(d.get("content") or "" for d in deltas) == whole["content"]


def test_server_refuses_unknown_reasoning_format(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="reasoning_format"):
        c.chat.completions.create(model="m", messages=CHAT["messages"], max_tokens=2,
                                  extra_body={"reasoning_format": "sometimes"})
