"""Tool calls without a server: format detection, parsing fixed model outputs (whole, streamed in
pieces, malformed) into OpenAI structures, partial JSON, the lazy/forced grammars on SmolLM2's
real vocabulary, and the template rewrites that let tool conversations round-trip."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from service.api.errors import ApiError
from service.api.protocol import decode
from service.api.protocol_openai import ChatRequest, chat_input, tool_request
from service.api.result_json import delta_json, message_json
from service.chat import ChatTemplate
from service.chat.caps import caps_of, polyfill
from service.chat.chatmsg import ChatMsg
from service.chat.output import OutputSpec, OutputStream, final_message, parse_output
from service.chat.partial_json import NotJSON, canonical, dumps, parse_prefix
from service.chat.plan import build_plan, marker, specials
from service.chat.reasoning import ReasoningFormat
from service.chat.toolcall_formats import ToolFormat, ToolParseError, detect, parse_calls
from service.chat.toolcall_grammar import build_grammar
from service.chat.tools import ToolChoice
from service.gguf_reader import read_gguf
from service.sampling import GrammarCompiler
from service.sampling.lazy import LazyGrammar, Marker, json_rule, token_set
from service.tokenizer import Tokenizer
from tests.server_proc import SMOLLM2

F = ToolFormat
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
           "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}]
FUNCS = [t["function"] for t in TOOLS]

# -- format detection (llama.cpp's order) --------------------------------------------------------

QWEN_LIKE = ("{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{%- if m.tool_calls %}"
             "{%- for tc in m.tool_calls %}<tool_call>\n{\"name\": \"{{ tc.function.name }}\", \"arguments\": "
             "{{ tc.function.arguments | tojson }}}\n</tool_call>{%- endfor %}{%- endif %}<|im_end|>\n"
             "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")


@pytest.mark.parametrize("source,tools,none,schema,fmt", [
    (QWEN_LIKE, True, False, False, F.HERMES_2_PRO),
    (QWEN_LIKE, False, False, False, F.HERMES_2_PRO),  # parsed as content: the request has no tools
    (QWEN_LIKE, True, False, True, F.GENERIC),  # tools and a response schema: generic
    ("{{ messages }}", False, False, False, F.CONTENT_ONLY),
    ("{{ messages }}", True, True, False, F.CONTENT_ONLY),
    ("<|start_header_id|>ipython<|end_header_id|>", True, False, False, F.LLAMA_3_X),
    ("[TOOL_CALLS] {{ messages }}", True, False, False, F.MISTRAL_NEMO),
    ("{{ messages }}", True, False, False, F.GENERIC),  # SmolLM2's kind of template
])
def test_detect(source, tools, none, schema, fmt):
    assert detect(source, tools=tools, choice_none=none, schema=schema) is fmt


# -- whole outputs --------------------------------------------------------------------------------

CASES = [  # (format, model output, content, [(name, arguments dict)])
    (F.HERMES_2_PRO, 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Let me check.", [("get_weather", {"city": "Paris"})]),
    (F.HERMES_2_PRO, '<tool_call>{"name":"ping","arguments":{}}</tool_call>\n<tool_call>{"name": "get_weather", '
                     '"arguments": {"city": "Rome", "days": 3}}</tool_call>', "",
     [("ping", {}), ("get_weather", {"city": "Rome", "days": 3})]),
    (F.HERMES_2_PRO, '<function=get_weather>{"city": "Oslo"}</function>', "", [("get_weather", {"city": "Oslo"})]),
    (F.HERMES_2_PRO, '```json\n<tool_call>{"name": "ping", "arguments": {}}</tool_call>\n```', "", [("ping", {})]),
    (F.HERMES_2_PRO, 'No tools needed: {"a": 1} is JSON.', 'No tools needed: {"a": 1} is JSON.', []),
    (F.LLAMA_3_X, '{"type": "function", "name": "get_weather", "parameters": {"city": "Lima"}}', "",
     [("get_weather", {"city": "Lima"})]),
    (F.LLAMA_3_X, '{"name": "ping", "parameters": {}}', "", [("ping", {})]),
    (F.LLAMA_3_X, "The weather is fine.", "The weather is fine.", []),
    (F.MISTRAL_NEMO, '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Kyiv"}, "id": "abcDEF123"}]', "",
     [("get_weather", {"city": "Kyiv"})]),
    (F.MISTRAL_NEMO, "Plain answer.", "Plain answer.", []),
    (F.GENERIC, '{"tool_call": {"name": "get_weather", "arguments": {"city": "Quito"}}}', "",
     [("get_weather", {"city": "Quito"})]),
    (F.GENERIC, '{"tool_calls": [{"name": "ping", "arguments": {}, "id": "c001"}, '
                '{"name": "get_weather", "arguments": {"city": "Bern"}, "id": "c002"}]}', "",
     [("ping", {}), ("get_weather", {"city": "Bern"})]),
    (F.GENERIC, '{"response": "Hello there!"}', "Hello there!", []),
    (F.GENERIC, '{"response": {"answer": 42}}', '{\n  "answer": 42\n}', []),
]


@pytest.mark.parametrize("fmt,text,content,calls", CASES, ids=lambda x: str(x)[:30])
def test_whole_output(fmt, text, content, calls):
    msg = final_message(OutputSpec(fmt), text)
    assert msg.content == content
    assert [(c.name, json.loads(c.arguments)) for c in msg.tool_calls] == calls
    for c in msg.tool_calls:
        assert c.arguments == dumps(json.loads(c.arguments))  # compact, as llama-server sends them
        assert len(c.id) >= 4 and c.id.isalnum()
    oai = message_json(msg)
    if calls:
        assert oai["content"] is None if not content else oai["content"] == content
        assert [t["type"] for t in oai["tool_calls"]] == ["function"] * len(calls)
        assert [t["function"]["name"] for t in oai["tool_calls"]] == [c[0] for c in calls]
    else:
        assert "tool_calls" not in oai and oai["content"] == content


def test_model_ids_are_kept():
    msg = final_message(OutputSpec(F.MISTRAL_NEMO), CASES[8][1])
    assert msg.tool_calls[0].id == "abcDEF123"
    msg = final_message(OutputSpec(F.GENERIC), CASES[11][1])
    assert [c.id for c in msg.tool_calls] == ["c001", "c002"]


@pytest.mark.parametrize("fmt,text", [
    (F.HERMES_2_PRO, '<tool_call>{"name": "get_weather", "arguments": {"city": "Par'),  # cut off
    (F.HERMES_2_PRO, '<tool_call>{"name": "get_weather", "arguments": {"city": }}</tool_call>'),  # bad JSON
    (F.HERMES_2_PRO, '<tool_call>{"name": "ping", "arguments": {}} trailing junk'),  # no closing tag
    (F.LLAMA_3_X, '{"name": "ping", "parameters": {}} and more text'),
    (F.MISTRAL_NEMO, '[TOOL_CALLS][{"name": "ping", "arguments": {}'),
    (F.GENERIC, '{"tool_call": {"name": "ping"'),
    (F.GENERIC, "not JSON at all"),
    (F.GENERIC, '{"something": "else"}'),
])
def test_malformed_output_is_content(fmt, text):
    # llama-server: a final parse that fails keeps the whole text as content, with no calls
    with pytest.raises(ToolParseError):
        parse_calls(fmt, text, partial=False)
    msg = final_message(OutputSpec(fmt), text)
    assert msg.content == text and msg.tool_calls == []
    for k in range(len(text) + 1):  # a partial parse never raises
        parse_calls(fmt, text[:k], partial=True)


# -- streamed in pieces ---------------------------------------------------------------------------

def _replay(spec: OutputSpec, text: str, pieces: list[str]) -> tuple[ChatMsg, list]:
    """Stream the pieces, then finish; rebuild the message from the deltas as a client does."""
    out = OutputStream(spec)
    deltas = []
    for p in pieces:
        deltas += out.feed(p)
    final, last = out.finish(text)
    deltas += last
    got = ChatMsg()
    for d in deltas:
        o = delta_json(d)
        got.content += o.get("content", "")
        got.reasoning_content += o.get("reasoning_content", "")
        for tc in o.get("tool_calls", []):
            if tc["index"] == len(got.tool_calls):  # a new call opens with id, type and name
                assert tc["id"] and tc["type"] == "function" and tc["function"]["name"]
                got.tool_calls.append([tc["function"]["name"], "", tc["id"]])
            assert tc["index"] < len(got.tool_calls)
            got.tool_calls[tc["index"]][1] += tc["function"]["arguments"]
    return final, [got, deltas]


def _chunks(text: str, seed: int) -> list[str]:
    rng, out, i = random.Random(seed), [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        out.append(text[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("fmt,text,content,calls", [c for c in CASES if c[3]], ids=lambda x: str(x)[:30])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_pieces_rebuild_the_message(fmt, text, content, calls, seed):
    final, (got, deltas) = _replay(OutputSpec(fmt), text, _chunks(text, seed))
    assert [(c.name, json.loads(c.arguments)) for c in final.tool_calls] == calls
    assert [[c.name, c.arguments, c.id] for c in final.tool_calls] == got.tool_calls  # same ids, args concatenate
    assert got.content == final.content
    assert all(d.tool_index < len(calls) for d in deltas)


def test_streamed_arguments_arrive_before_the_call_ends():
    out = OutputStream(OutputSpec(F.HERMES_2_PRO))
    deltas = out.feed('Checking <tool_call>\n{"name": "get_weather", "arguments": {"city": "Par')
    assert [d.content for d in deltas if d.content] == ["Checking"]  # its trailing space waits
    call = [d for d in deltas if d.tool_index == 0]
    assert call[0].tool_name == "get_weather" and call[0].tool_id and call[0].tool_args == '{"city":"Par'
    # '<' is string text here; the number 1 may still grow, so it waits
    assert [d.tool_args for d in out.feed('is<", "days": 1')] == ['is<","days":']
    assert [d.tool_args for d in out.feed("0}")] == ["10}"]
    assert out.feed("}\n</tool_") == []
    msg, last = out.finish(out.text + "call>")
    assert last == [] and msg.tool_calls[0].arguments == '{"city":"Paris<","days":10}'
    assert msg.tool_calls[0].id == call[0].tool_id


def test_streaming_holds_back_a_partial_tag():
    out = OutputStream(OutputSpec(F.HERMES_2_PRO))
    assert [d.content for d in out.feed("Sure <tool_ca")] == ["Sure"]
    assert out.feed("ll>{") == []


# -- partial JSON ---------------------------------------------------------------------------------

DOCS = ['{"city": "Paris", "n": [1, 2.5e3, -0.25, true, null], "s": "a\\"b\\u00e9\\ud83d\\ude00 c", "o": {}}',
        '[{"name": "f", "arguments": {"x": 1}, "id": "abc123xyz"}]', '  {"a" : {"b": [ ] } }  ', '"plain"', "-12.5"]


@pytest.mark.parametrize("doc", DOCS)
def test_partial_json_prefixes_only_grow(doc):
    full = canonical(parse_prefix(doc, final=True))
    assert full == dumps(json.loads(doc))
    for k in range(len(doc) + 1):
        assert full.startswith(canonical(parse_prefix(doc[:k])))


@pytest.mark.parametrize("bad", ['{"a" 1}', "[1 2]", "{a: 1}", '"\\x"', "-", "1.", '{"a": tru e}', "[1,]"])
def test_partial_json_refuses_non_json(bad):
    with pytest.raises(NotJSON):
        parse_prefix(bad, final=True)


# -- requests ---------------------------------------------------------------------------------

def _req(body: dict) -> ChatRequest:
    """A chat request as the HTTP edge decodes it."""
    return decode(msgspec.json.encode(body), ChatRequest)


def _input(body: dict):
    """The chat layer's input for a chat request body, as the HTTP edge makes it."""
    return chat_input(_req(body))


def test_tool_request_fields():
    r = tool_request(_req({"tools": TOOLS}))
    assert r.choice is ToolChoice.AUTO and not r.parallel and [f["name"] for f in r.functions] == ["get_weather", "ping"]
    r = tool_request(_req({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "ping"}}}))
    assert r.choice is ToolChoice.REQUIRED and [f["name"] for f in r.functions] == ["ping"]
    assert tool_request(_req({"tools": TOOLS, "tool_choice": "none"})).active is False
    assert tool_request(_req({})) is None


@pytest.mark.parametrize("body,field", [
    ({"tools": "x"}, "tools"), ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}, "tools[0].function.parameters"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
])
def test_tool_request_errors_name_the_field(body, field):
    with pytest.raises(ApiError, match=rf"^{field.replace('[', '.').replace(']', '.')}"):
        tool_request(_req(body))


# -- grammars on the real vocabulary -------------------------------------------------------------

@pytest.fixture(scope="module")
def smol():
    meta = read_gguf(str(SMOLLM2)).metadata
    tok = Tokenizer.from_metadata(meta)
    return tok, GrammarCompiler(tok), meta


def _feed(tok, c, text: str) -> bool:
    for t in tok.tokenize(text, add_special=False, parse_special=True):
        if not c.allows(t):
            return False
        c.accept(t)
    return True


def _grammar(smol, fmt, required=False, parallel=False, funcs=FUNCS):
    tok, gc, _ = smol
    lark = build_grammar(fmt, funcs, required=required, parallel=parallel, response_schema=None,
                         marker=lambda s: marker(tok, gc, s), specials=specials(gc))
    return gc.compile(grammar=lark)


@pytest.mark.parametrize("fmt,free,call", [
    (F.HERMES_2_PRO, "Sure, let me look that up. ", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    (F.MISTRAL_NEMO, "Sure. ", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]'),
])
def test_lazy_grammar_free_text_then_constrained_call(smol, fmt, free, call):
    tok = smol[0]
    c = _grammar(smol, fmt)
    assert _feed(tok, c, "Any text at all { \"name\": 1 } <|im_start|> is fine") and c.is_accepting
    c = _grammar(smol, fmt)
    assert _feed(tok, c, free + call) and c.is_accepting
    trig = call[:call.index("{") if fmt is F.HERMES_2_PRO else call.index("[{")]
    c = _grammar(smol, fmt)  # after the trigger the call must match a tool's schema
    assert not _feed(tok, c, free + trig + '{"name": "get_weather", "arguments": {"town": "x"}')
    c = _grammar(smol, fmt)
    assert not _feed(tok, c, free + trig + '{"name": "delete_everything"')
    c = _grammar(smol, fmt)
    assert not _feed(tok, c, free + trig + '{"name": "get_weather", "arguments": {"city": 7}')


def test_forced_grammar_starts_with_the_call(smol):
    tok = smol[0]
    c = _grammar(smol, F.HERMES_2_PRO, required=True)
    assert not _feed(tok, c, "Hello")
    c = _grammar(smol, F.HERMES_2_PRO, required=True)
    assert _feed(tok, c, '<tool_call>{"name": "ping", "arguments": {}}</tool_call>\n') and c.is_accepting
    assert not _feed(tok, c, "<tool_call>")  # one call only without parallel_tool_calls


def test_parallel_calls_repeat(smol):
    tok = smol[0]
    two = '<tool_call>{"name": "ping", "arguments": {}}</tool_call>\n<tool_call>{"name": "ping", "arguments": {}}</tool_call>'
    assert not _feed(tok, _grammar(smol, F.HERMES_2_PRO, required=True), two)
    c = _grammar(smol, F.HERMES_2_PRO, required=True, parallel=True)
    assert _feed(tok, c, two) and c.is_accepting


def test_llama3_grammar_triggers_on_a_leading_brace(smol):
    tok = smol[0]
    assert _feed(tok, _grammar(smol, F.LLAMA_3_X), "It is sunny {not json}")
    assert not _feed(tok, _grammar(smol, F.LLAMA_3_X), ' {"name": "nope"')
    c = _grammar(smol, F.LLAMA_3_X)
    assert _feed(tok, c, '{"type": "function", "name": "get_weather", "parameters": {"city": "Lima"}}') and c.is_accepting


def test_generic_grammar_is_always_json(smol):
    tok = smol[0]
    assert not _feed(tok, _grammar(smol, F.GENERIC), "Hello")
    c = _grammar(smol, F.GENERIC)
    assert _feed(tok, c, '{"response": "Hello"}') and c.is_finished
    assert not _feed(tok, _grammar(smol, F.GENERIC, required=True), '{"response": "Hello"}')
    c = _grammar(smol, F.GENERIC, required=True, parallel=True)
    assert _feed(tok, c, '{"tool_calls": [{"name": "ping", "arguments": {}, "id": "c001"}]}') and c.is_finished


def test_token_trigger_and_specials_in_free_text(smol):
    tok, gc, _ = smol
    im_start, im_end = tok.token_id("<|im_start|>"), tok.token_id("<|im_end|>")
    assert marker(tok, gc, "<|im_start|>") == Marker("<|im_start|>", im_start)
    assert marker(tok, gc, "<tool_call>") == Marker("<tool_call>")  # not one token in this vocabulary
    assert im_start in specials(gc) and im_end not in specials(gc)  # end-of-generation is the grammar's
    g = LazyGrammar(specials(gc))
    g.rule("call", json_rule({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}))
    lark = g.lazy([Marker("<|im_start|>", im_start)], "call")
    assert _feed(tok, gc.compile(grammar=lark), 'text <|im_start|>{"a": 1}')
    assert not _feed(tok, gc.compile(grammar=lark), "text <|im_start|>words")  # the trigger token is not free text
    assert token_set([5, 1, 2, 3, 9]) == "<[1-3,5,9]>"


# -- templates: tools described, calls and results round-trip --------------------------------------

def test_smollm2_tool_conversation_renders_as_llama_server(smol):
    # SmolLM2's template prints neither tools nor calls: llama-server adds no note and rewrites
    # nothing (the tool message prints under its own role); a call is still forced by the grammar
    tok, gc, meta = smol
    tmpl = ChatTemplate.from_model(meta, bos_token="<|im_start|>", eos_token="<|im_end|>")
    caps = caps_of(tmpl)
    assert not caps.tools and not caps.tool_calls and caps.non_null_content
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_7", "content": "sunny, 21 C"}]
    plan = build_plan(tmpl, _input({"messages": messages, "tools": TOOLS}), tokenizer=tok, compiler=gc,
                      default_reasoning=ReasoningFormat.AUTO, stream=False)
    assert plan.rendered.text.endswith("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
                                       "<|im_end|>\n<|im_start|>tool\nsunny, 21 C<|im_end|>\n<|im_start|>assistant\n")
    assert "get_weather" not in plan.rendered.text and "Respond in JSON" not in plan.rendered.text
    assert plan.spec.format is F.GENERIC and plan.constraint is not None


def test_template_that_prints_calls_gets_object_arguments(smol):
    tmpl = ChatTemplate(QWEN_LIKE, name="custom", bos_token="", eos_token="<|im_end|>")
    caps = caps_of(tmpl)
    assert caps.tool_calls and caps.object_arguments and caps.parallel_tool_calls
    msgs = polyfill(caps, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "ping", "arguments": '{"a": 1}'}}]}])
    out = tmpl.render(msgs, add_generation_prompt=False).text
    assert '<tool_call>\n{"name": "ping", "arguments": {"a": 1}}\n</tool_call>' in out
    plan = build_plan(tmpl, _input({"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}), tokenizer=smol[0],
                      compiler=smol[1], default_reasoning=ReasoningFormat.AUTO, stream=False)
    assert plan.spec.format is F.HERMES_2_PRO and "start: free |" in plan.grammar  # lazy


def test_output_spec_without_tools_is_content():
    msg = parse_output(OutputSpec(F.CONTENT_ONLY), '<tool_call>{"name": "ping", "arguments": {}}</tool_call>', False)
    assert msg.tool_calls == [] and msg.content.startswith("<tool_call>")


def test_arguments_allow_no_unlisted_properties(smol):
    # llama.cpp's schema converter closes objects that list their properties; so does the tool grammar
    tok = smol[0]
    c = _grammar(smol, F.HERMES_2_PRO, required=True)
    assert not _feed(tok, c, '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "type"')
    open_ = {**WEATHER, "additionalProperties": True}
    c = _grammar(smol, F.HERMES_2_PRO, required=True, funcs=[{"name": "get_weather", "parameters": open_}])
    assert _feed(tok, c, '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "type": 1}}</tool_call>')


def test_system_text_joins_the_user_turn_where_the_template_has_no_system_role(smol):
    src = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
           "[{{ m.role }}] {{ m.content }}\n{% endfor %}")
    tmpl = ChatTemplate(src, name="custom", bos_token="", eos_token="")
    assert not caps_of(tmpl).system_role
    plan = build_plan(tmpl, _input({"messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Hi"}]}),
                      tokenizer=smol[0], compiler=None, default_reasoning=ReasoningFormat.AUTO, stream=False)
    assert plan.rendered.text == "[user] Be brief.\nHi\n"


def test_required_call_after_an_opened_thinking_block(smol):
    tok, gc, _ = smol
    tmpl = ChatTemplate(QWEN_LIKE + "{%- if add_generation_prompt %}<think>\n{%- endif %}", name="custom",
                        bos_token="", eos_token="<|im_end|>")
    plan = build_plan(tmpl, _input({"messages": [{"role": "user", "content": "Weather?"}], "tools": TOOLS,
                                    "tool_choice": "required"}), tokenizer=tok, compiler=gc,
                      default_reasoning=ReasoningFormat.AUTO, stream=False)
    assert plan.spec.forced_open and plan.spec.format is F.HERMES_2_PRO
    out = ('The user wants the weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": '
           '{"city": "Paris"}}\n</tool_call>')
    c = plan.constraint
    assert _feed(tok, c, out) and c.is_accepting
    msg = final_message(plan.spec, out)
    assert msg.reasoning_content == "The user wants the weather." and msg.tool_calls[0].name == "get_weather"


def test_uncompilable_tool_schema_is_a_client_error(smol):
    tok, gc, meta = smol
    tmpl = ChatTemplate.from_model(meta, bos_token="<|im_start|>", eos_token="<|im_end|>")
    bad = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "nonsense"}}}}}]
    with pytest.raises(ValueError, match=r"^tools: failed to compile JSON schema: Invalid type: nonsense$"):
        build_plan(tmpl, _input({"messages": [{"role": "user", "content": "x"}], "tools": bad}), tokenizer=tok,
                   compiler=gc, default_reasoning=ReasoningFormat.AUTO, stream=False)


def test_a_quoted_schema_is_no_llama3_call_and_a_stream_never_announces_one():
    # what a small model wrote for llama.cpp's test_completion_without_tool_call_fast: a fenced
    # object that holds a {"name": ...} one level down is content, streamed or not
    text = ('\n```json\n{\n    "type": "function",\n    "function": {\n        "parameters": [\n'
            '            {\n                "name": "test",\n                "type": "string"\n            }\n'
            '        ]\n    }\n}\n```')
    spec = OutputSpec(F.LLAMA_3_X)
    final, (got, deltas) = _replay(spec, text, [text[i:i + 3] for i in range(0, len(text), 3)])
    assert final.tool_calls == [] and final.content == text
    assert got.tool_calls == [] and got.content == text
    assert parse_calls(F.LLAMA_3_X, 'Sure. {"name": "ping", "parameters": {}}', False)[1][0].name == "ping"
