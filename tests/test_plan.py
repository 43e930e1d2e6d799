"""service/chat/plan.py: what a chat request renders to before generation."""

import pytest

from service.chat import ChatTemplate
from service.chat.plan import ChatInput, build_plan
from service.chat.reasoning import ReasoningFormat

HI = [{"role": "user", "content": "hi"}]
TURNS = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
# forced: the template opens the block and leaves it to the model (DeepSeek R1, QwQ)
FORCED = TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
# reads enable_thinking and closes the block itself (Qwen3, llama.cpp's test copies of QwQ and R1)
SELF_CLOSING = TURNS + ("{% if add_generation_prompt %}<|im_start|>assistant\n"
                        "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
                        "{% endif %}{% endif %}{# <think> #}")
# knows the tags but opens nothing: the model may open a block on its own
OPTIONAL = TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{# <think> </think> #}"


def prompt(source: str, thinking: bool) -> str:
    t = ChatTemplate.from_model({}, name=source, bos_token="<s>", eos_token="</s>")
    inp = ChatInput(HI, template_kwargs={"enable_thinking": thinking})
    return build_plan(t, inp, tokenizer=None, compiler=None, default_reasoning=ReasoningFormat.DEEPSEEK,
                      stream=False).rendered.text


@pytest.mark.parametrize(("source", "off_end"), [
    (FORCED, "assistant\n<think>\n</think>"),
    (SELF_CLOSING, "assistant\n<think>\n\n</think>\n\n"),  # closed once: the template did it
])
def test_thinking_off_closes_the_block_once(source, off_end):
    off = prompt(source, False)
    assert off.endswith(off_end) and off.count("</think>") == 1
    assert "</think>" not in prompt(source, True)


def test_thinking_off_adds_nothing_where_the_template_opens_no_block():
    # llama-server leaves the block to the model (tests/fixtures/templates_llamacpp.json: SmolLM3, Kimi K2)
    assert prompt(OPTIONAL, False) == prompt(OPTIONAL, True)
