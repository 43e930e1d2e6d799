"""reasoning_effort (chat) and reasoning.effort (Responses) reach the template as llama-server passes them:
chat_template_kwargs.reasoning_effort, or thinking off for "none"."""

from __future__ import annotations

import msgspec

from service.api.protocol_openai import ChatRequest, chat_input
from service.api.protocol_responses import ResponsesRequest
from tests.chat_sweep import CONVERSATIONS
from tests.test_chat_sweep import ours, recorded

USER = [{"role": "user", "content": "Hi"}]


def test_effort_is_a_template_kwarg_and_none_turns_thinking_off():
    inp = chat_input(msgspec.convert({"messages": USER, "reasoning_effort": "low",
                                      "chat_template_kwargs": {"reasoning_effort": "high"}}, ChatRequest))
    assert inp.template_kwargs == {"reasoning_effort": "low"}  # the field wins over the kwarg
    inp = chat_input(msgspec.convert({"messages": USER, "reasoning_effort": "none",
                                      "chat_template_kwargs": {"reasoning_effort": "high"}}, ChatRequest))
    assert inp.template_kwargs == {"enable_thinking": False}
    assert chat_input(msgspec.convert({"messages": USER}, ChatRequest)).template_kwargs == {}


def test_responses_effort_is_the_chat_requests():
    chat = msgspec.convert({"input": "Hi", "reasoning": {"effort": "high"}}, ResponsesRequest).to_chat()
    assert chat_input(chat).template_kwargs == {"reasoning_effort": "high"}


def test_gpt_oss_prompt_carries_the_effort():
    name = "openai-gpt-oss-120b.jinja"
    got = ours(name, CONVERSATIONS["reasoning_effort"])["prompt"]
    assert "Reasoning: high" in got and got == recorded()["templates"][name]["cases"]["reasoning_effort"]["prompt"]
    assert "Reasoning: medium" in ours(name, CONVERSATIONS["system_user"])["prompt"]
