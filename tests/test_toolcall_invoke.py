"""service/chat/toolcall_invoke.py: MiniMax M2's and DeepSeek V3.2's invokes beyond llama.cpp's fixtures (several per
block, values by schema, streaming, malformed output) and the grammar that forces them."""

from __future__ import annotations

import json

import pytest

from service.chat.output import OutputSpec, OutputStream, final_message
from service.chat.toolcall_formats import ToolFormat, detect
from tests.chat_vocab import accepts

F = ToolFormat.MINIMAX_M2
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}
PING = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
TOOLS = {"get_weather": WEATHER["parameters"], "ping": PING["parameters"]}


def _invoke(name: str, **params: str) -> str:
    return f'<invoke name="{name}">\n' + "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params.items()) + "</invoke>\n"


def _block(*invokes: str) -> str:
    return "<minimax:tool_call>\n" + "".join(invokes) + "</minimax:tool_call>"


def test_detected_from_the_namespaced_tag():
    assert detect("{%- set t = '<minimax:tool_call>' -%}", tools=True, choice_none=False, schema=False) is F


def test_several_invokes_typed_by_the_schema():
    msg = final_message(OutputSpec(F, schemas=TOOLS), "On it.\n" + _block(_invoke("get_weather", city="42", days="3"),
                                                                         _invoke("ping")))
    assert msg.content == "On it.\n" and [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == [
        ("get_weather", {"city": "42", "days": 3}), ("ping", {})]


def test_streamed_parameter_by_parameter():
    out = OutputStream(OutputSpec(F, schemas=TOOLS))
    assert out.feed("<minimax:tool_call>\n<invoke name=\"get_wea") == []
    deltas = out.feed('ther">\n<parameter name="city">Os')
    assert [(d.tool_index, d.tool_name, d.tool_args) for d in deltas] == [(0, "get_weather", "{")]
    assert [d.tool_args for d in out.feed("lo</parameter>")] == ['"city":"Oslo"']
    msg, _ = out.finish(out.text + "\n</invoke>\n</minimax:tool_call>")
    assert msg.tool_calls[0].arguments == '{"city":"Oslo"}' and msg.content == ""


@pytest.mark.parametrize("text", [
    "<minimax:tool_call>\n" + _invoke("ping"),  # no closing tag
    _block(_invoke("ping")) + " and more",
    '<minimax:tool_call>\n<invoke name="ping">\n<parameter name="a">1\n</invoke>\n</minimax:tool_call>',
])
def test_malformed_calls_are_content(text):
    msg = final_message(OutputSpec(F, schemas=TOOLS), text)
    assert (msg.content, msg.tool_calls) == (text, [])


def test_grammar_forces_a_block_of_invokes():
    one = _block(_invoke("get_weather", city="a <b> c", days="3"))
    assert accepts(F, [WEATHER, PING], one, required=True)
    assert not accepts(F, [WEATHER, PING], "Hello", required=True)
    assert not accepts(F, [WEATHER, PING], _block(_invoke("get_weather", days="three")), required=True)
    two = _block(_invoke("ping"), _invoke("ping"))
    assert not accepts(F, [WEATHER, PING], two, required=True)
    assert accepts(F, [WEATHER, PING], two, required=True, parallel=True)
    assert accepts(F, [WEATHER, PING], "Let me check. " + one)


# -- DeepSeek V3.2's DSML ------------------------------------------------------------------------

D = "｜DSML｜"


def _dsml(name: str, *params: tuple[str, str, str]) -> str:
    body = "".join(f'<{D}parameter name="{k}" string="{s}">{v}</{D}parameter>\n' for k, s, v in params)
    return f'<{D}function_calls>\n<{D}invoke name="{name}">\n{body}</{D}invoke>\n</{D}function_calls>'


def test_dsml_detected_from_its_template_variable():
    src = "{%- set dsml_token = '｜DSML｜' -%}{{ '<' + dsml_token + 'function_calls>' }}"
    assert detect(src, tools=True, choice_none=False, schema=False) is ToolFormat.DEEPSEEK_V3_2


def test_dsml_string_attribute_decides_the_type():
    text = "Checking.\n\n" + _dsml("get_weather", ("city", "true", "42"), ("days", "false", "3"))
    msg = final_message(OutputSpec(ToolFormat.DEEPSEEK_V3_2, schemas=TOOLS), text)
    assert msg.content == "Checking." and json.loads(msg.tool_calls[0].arguments) == {"city": "42", "days": 3}


def test_dsml_grammar_writes_the_attribute_by_type():
    F2 = ToolFormat.DEEPSEEK_V3_2
    assert accepts(F2, [WEATHER, PING], _dsml("get_weather", ("city", "true", "Oslo"), ("days", "false", "3")),
                   required=True)
    assert not accepts(F2, [WEATHER, PING], _dsml("get_weather", ("city", "false", "Oslo")), required=True)
    assert not accepts(F2, [WEATHER, PING], _dsml("get_weather", ("days", "false", "x")), required=True)
    assert accepts(F2, [WEATHER, PING], "Let me see. " + _dsml("ping"))


# -- DeepSeek V4: the same invokes in a block named tool_calls ---------------------------------------

V4 = ToolFormat.DEEPSEEK_V4
V4_SOURCE = "{%- set dsml_token = '｜DSML｜' -%}{{ '\\n\\n<' + dsml_token + 'tool_calls>\\n' }}"


def _v4(name: str, *params: tuple[str, str, str]) -> str:
    return _dsml(name, *params).replace(f"{D}function_calls>", f"{D}tool_calls>")


def test_v4_detected_apart_from_v32():
    assert detect(V4_SOURCE, tools=True, choice_none=False, schema=False) is V4


def test_v4_reads_only_its_own_block():
    msg = final_message(OutputSpec(V4, schemas=TOOLS), "Checking.\n\n" + _v4("get_weather", ("days", "false", "3")))
    assert msg.content == "Checking." and json.loads(msg.tool_calls[0].arguments) == {"days": 3}
    v32 = _dsml("ping")
    assert final_message(OutputSpec(V4, schemas=TOOLS), v32).tool_calls == []


def test_v4_streamed_call_never_shows_in_content():
    out, text = OutputStream(OutputSpec(V4, schemas=TOOLS)), "Sure.\n\n" + _v4("get_weather", ("city", "true", "Oslo"))
    deltas = [d for i in range(0, len(text), 4) for d in out.feed(text[i:i + 4])]
    assert "".join(d.content for d in deltas) == "Sure." and {d.tool_index for d in deltas if d.tool_name} == {0}
    msg, _ = out.finish(text)
    assert json.loads(msg.tool_calls[0].arguments) == {"city": "Oslo"}


def test_v4_thoughts_end_at_the_block():
    from service.chat.reasoning import ReasoningFormat, split_reasoning, tags_for

    split = split_reasoning("Let me look\n\n" + _v4("ping"), tags_for(V4_SOURCE), ReasoningFormat.DEEPSEEK,
                            partial=False, forced=True)
    assert split.reasoning == "Let me look" and split.rest.startswith(f"<{D}tool_calls>")


def test_v4_grammar_forces_its_block():
    assert accepts(V4, [WEATHER, PING], _v4("get_weather", ("city", "true", "Oslo")), required=True)
    assert not accepts(V4, [WEATHER, PING], _dsml("get_weather", ("city", "true", "Oslo")), required=True)
    assert accepts(V4, [WEATHER, PING], "Let me see. " + _v4("ping"))
