"""The grammar that keeps a tool call inside the tools' JSON schemas, per tool-call format.

Lazy (tool_choice "auto"): free text until the model opens a call, then the call is constrained;
forced ("required" or a named function): the output is calls from the first token. Following
llama.cpp's grammars (common/chat.cpp):

    HERMES_2_PRO   <tool_call> {"name": const, "arguments": params} </tool_call>, repeated when
                   parallel_tool_calls; trigger `<tool_call>`
    LLAMA_3_X      {"type": "function"?, "name": const, "parameters": params}; trigger: the output
                   starts with `{`
    MISTRAL_NEMO   [TOOL_CALLS] [{"name", "arguments", "id": 9 alphanumerics}] (one item unless
                   parallel); trigger `[TOOL_CALLS]`
    QWEN3_CODER    <tool_call> <function=f> <parameter=p> value </parameter> ... </function> </tool_call>
                   (toolcall_xml.py); trigger `<tool_call>`
    GPT_OSS        <|channel|>commentary to=functions.f <|constrain|>json<|message|>{...}<|call|>, after
                   thoughts in the analysis channel (harmony.py); trigger `to=functions.`
    DEEPSEEK_R1    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f ```json {...}```<｜tool▁call▁end｜>
    DEEPSEEK_V3_1  ... <｜tool▁call▁begin｜>f<｜tool▁sep｜>{...}<｜tool▁call▁end｜> (toolcall_deepseek.py); trigger
                   `<｜tool▁calls▁begin｜>`
    KIMI_K2        <|tool_calls_section_begin|>? <|tool_call_begin|>functions.f:N<|tool_call_argument_begin|>{...}
                   <|tool_call_end|> ... (toolcall_kimi.py); trigger `<|tool_call_begin|>`
    GLM_4_5        <tool_call>f <arg_key>k</arg_key> <arg_value>v</arg_value> ... </tool_call> (toolcall_glm.py);
                   trigger `<tool_call>`
    FUNCTIONARY_V3_1  <function=f>{...}</function> (toolcall_functionary.py); trigger `<function=`
    FUNCTIONARY_V3_2  f\n{...} after the prompt's `>>>`, more after `>>>`; trigger `>>>`
    COMMAND_R7B    (<|START_THINKING|>...<|END_THINKING|>)? <|START_ACTION|>[{"tool_call_id", "tool_name",
                   "parameters"}]<|END_ACTION|> (toolcall_command_r7b.py); trigger `<|START_ACTION|>`
    COHERE2_MOE    the same action (toolcall_command_r7b.py), text in <|START_TEXT|>...<|END_TEXT|>
    GRANITE        <|tool_call|>[{"name", "arguments"}] (toolcall_granite.py); trigger `<|tool_call|>`
    MINIMAX_M2     <minimax:tool_call> <invoke name="f"> <parameter name="k">v</parameter> </invoke>
                   </minimax:tool_call> (toolcall_invoke.py); trigger `<minimax:tool_call>`
    LFM2           <|tool_call_start|>[f(k=v, ...)]<|tool_call_end|> (toolcall_lfm2.py); trigger `<|tool_call_start|>`
    GEMMA_4        <|tool_call>call:f{k:<|"|>text<|"|>,n:1}<tool_call|> (toolcall_gemma4.py); trigger `<|tool_call>`
    DEEPSEEK_V3_2  the same in DSML: <｜DSML｜function_calls> <｜DSML｜invoke name="f"> <｜DSML｜parameter name="k"
                   string="true|false">v</｜DSML｜parameter> ... (toolcall_invoke.py)
    DEEPSEEK_V4    the same in a <｜DSML｜tool_calls> block
    MINISTRAL_3    [TOOL_CALLS]f[ARGS]{...}, each call behind its own marker (toolcall_ministral.py); trigger
                   `[TOOL_CALLS]`
    KIMI_K3        <|open|>tools<|sep|><|open|>call tool="f" index="1"<|sep|><|open|>argument key="k" ...<|sep|>v
                   <|close|>argument<|sep|> ... <|close|>call<|sep|><|close|>tools<|sep|> (toolcall_kimi_k3.py);
                   trigger `<|open|>` followed by `tools`
    MINIMAX_M3     ]<]minimax[>[<tool_call> ]<]minimax[>[<invoke name="f"> ]<]minimax[>[<k>v]<]minimax[>[</k> ...
                   (values as elements by their schemas, toolcall_minimax_m3.py); trigger `]<]minimax[>[<tool_call>`
    GIGACHAT_3     <|message_sep|>\n\nfunction call<|role_sep|>\n{"name", "arguments"}, one call (toolcall_gigachat.py);
                   trigger `<|message_sep|>`
    GIGACHAT_3_1   <|function_call|>{"name", "arguments"}; trigger `<|function_call|>`
    MINICPM5       <function name="f"><param name="k">v or <![CDATA[v]]></param></function> (toolcall_minicpm5.py);
                   trigger `<function name="`
    MUSE_GLIMMER    to=f<|message|><atem:function_calls><atem:invoke name="f"><atem:parameter name="k">v... after
                   messages to self (toolcall_muse.py); never lazy: every answer is messages
    LING_3         GLM's calls (toolcall_glm.py), read among <role> sections (toolcall_ling3.py)
    GENERIC        always forced: {"tool_call": ...} (or {"tool_calls": [...]} when parallel, each
                   with an "id"), or {"response": text or the requested schema} unless a call is required
"""

from __future__ import annotations

from collections.abc import Callable

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from . import (
    harmony,
    toolcall_command_r7b,
    toolcall_deepseek,
    toolcall_functionary,
    toolcall_gemma4,
    toolcall_gigachat,
    toolcall_glm,
    toolcall_granite,
    toolcall_invoke,
    toolcall_kimi,
    toolcall_kimi_k3,
    toolcall_lfm2,
    toolcall_minicpm5,
    toolcall_minimax_m3,
    toolcall_ministral,
    toolcall_muse,
    toolcall_xml,
)
from .toolcall_formats import ToolFormat

Function = dict  # {"name": str, "description": str?, "parameters": JSON schema}


def _one_of(schemas: list[dict]) -> dict:
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def closed(schema):
    """The schema with objects that list properties closed to others unless it says otherwise:
    llama.cpp's converter allows no additional properties by default, JSON Schema (and
    llguidance) allows any, and a small model given the choice wanders into them."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) if k in _SUBSCHEMAS else v for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: closed(s) for name, s in schema[key].items()}
    if "properties" in schema and "additionalProperties" not in schema and schema.get("type", "object") == "object":
        out["additionalProperties"] = False
    return out


_SUBSCHEMAS = ("items", "anyOf", "oneOf", "allOf", "prefixItems", "additionalProperties", "not")


def _call_schema(fn: Function, args_key: str = "arguments", **extra: dict) -> dict:
    props = {"name": {"type": "string", "const": fn["name"]}, args_key: closed(fn["parameters"]), **extra}
    required = ["name", args_key, *extra]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def build_grammar(fmt: ToolFormat, functions: list[Function], *, required: bool, parallel: bool,
                  response_schema: dict | None, marker: Callable[[str], Marker], specials: list[int],
                  think_close: str | None = None) -> str:
    """Lark text for the calls of `functions` (at least one) in format `fmt`. think_close: the
    prompt opened a thinking block that ends with this tag; a forced grammar starts after it."""
    g = LazyGrammar(specials)
    after = marker(think_close) if think_close else None
    if fmt is ToolFormat.GENERIC:
        answer = g.rule("answer", json_rule(_generic_schema(functions, required, parallel, response_schema)))
        return g.forced(answer, after)
    if fmt is ToolFormat.HERMES_2_PRO:
        open_, close = marker("<tool_call>"), marker("</tool_call>")
        g.rule("call", json_rule(_one_of([_call_schema(f) for f in functions])))
        g.rule("block", f"{WS} call {WS} {close.lark()} {WS}")
        g.rule("calls", f"block ({open_.lark()} block)*" if parallel else "block")
        return g.forced(f"{WS} {open_.lark()} calls", after) if required else g.lazy([open_], "calls")
    if fmt is ToolFormat.GPT_OSS:
        return harmony.grammar(g, functions, required=required, parallel=parallel, marker=marker)
    if fmt in (ToolFormat.DEEPSEEK_R1, ToolFormat.DEEPSEEK_V3_1):
        return toolcall_deepseek.grammar(g, functions, r1=fmt is ToolFormat.DEEPSEEK_R1, required=required,
                                         parallel=parallel, marker=marker, after=after)
    shut = [dict(f, parameters=closed(f.get("parameters") or {})) for f in functions]
    module = {ToolFormat.GLM_4_5: toolcall_glm, ToolFormat.LING_3: toolcall_glm, ToolFormat.KIMI_K2: toolcall_kimi,
              ToolFormat.COMMAND_R7B: toolcall_command_r7b, ToolFormat.COHERE2_MOE: toolcall_command_r7b,
              ToolFormat.GRANITE: toolcall_granite,
              ToolFormat.MINIMAX_M2: toolcall_invoke, ToolFormat.LFM2: toolcall_lfm2,
              ToolFormat.GEMMA_4: toolcall_gemma4, ToolFormat.MINISTRAL_3: toolcall_ministral,
              ToolFormat.KIMI_K3: toolcall_kimi_k3, ToolFormat.MINIMAX_M3: toolcall_minimax_m3,
              ToolFormat.MINICPM5: toolcall_minicpm5, ToolFormat.MUSE_GLIMMER: toolcall_muse}.get(fmt)
    if module is not None:
        return module.grammar(g, shut, required=required, parallel=parallel, marker=marker, after=after)
    if fmt in (ToolFormat.GIGACHAT_3, ToolFormat.GIGACHAT_3_1):
        mark = toolcall_gigachat.V3 if fmt is ToolFormat.GIGACHAT_3 else toolcall_gigachat.V31
        return toolcall_gigachat.grammar(g, shut, mark=mark, required=required, marker=marker, after=after)
    if fmt in (ToolFormat.DEEPSEEK_V3_2, ToolFormat.DEEPSEEK_V4):
        return toolcall_invoke.grammar(g, shut, required=required, parallel=parallel, marker=marker, after=after,
                                       d=toolcall_invoke.DSML if fmt is ToolFormat.DEEPSEEK_V3_2 else toolcall_invoke.DSML_V4)
    if fmt in (ToolFormat.FUNCTIONARY_V3_1, ToolFormat.FUNCTIONARY_V3_2):
        return toolcall_functionary.grammar(g, shut, v32=fmt is ToolFormat.FUNCTIONARY_V3_2, required=required,
                                            parallel=parallel, marker=marker, after=after)
    if fmt is ToolFormat.QWEN3_CODER:
        return toolcall_xml.grammar(g, functions, required=required, parallel=parallel, marker=marker, after=after)
    if fmt is ToolFormat.LLAMA_3_X:
        schemas = [_call_schema(f, "parameters") for f in functions]
        for s in schemas:  # the "type" key is optional and comes first
            s["properties"] = {"type": {"type": "string", "const": "function"}, **s["properties"]}
        g.rule("calls", f"{json_rule(_one_of(schemas))} {WS}")
        return g.forced(f"{WS} calls", after) if required else g.at_start("{", "calls")
    if fmt is ToolFormat.MISTRAL_NEMO:
        ident = {"id": {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"}}
        arr: dict = {"type": "array", "items": _one_of([_call_schema(f, **ident) for f in functions]),
                     "minItems": 1}
        if not parallel:
            arr["maxItems"] = 1
        trig = marker("[TOOL_CALLS]")
        g.rule("calls", f"{WS} {json_rule(arr)} {WS}")
        return g.forced(f"{trig.lark()} calls", after) if required else g.lazy([trig], "calls")
    raise ValueError(f"no tool-call grammar for the {fmt.value} format")


def _generic_schema(functions: list[Function], required: bool, parallel: bool, response: dict | None) -> dict:
    calls = []
    for fn in functions:
        s = _call_schema(fn)
        if parallel:  # the model names its calls, so that results can be matched to them
            s["properties"]["id"] = {"type": "string", "minLength": 4}
            s["required"].append("id")
        if fn.get("description"):
            s["description"] = fn["description"]
        calls.append(s)
    if parallel:
        call = {"type": "object", "properties": {"tool_calls": {"type": "array", "items": _one_of(calls),
                                                                "minItems": 1}},
                "required": ["tool_calls"], "additionalProperties": False}
    else:
        call = {"type": "object", "properties": {"tool_call": _one_of(calls)}, "required": ["tool_call"],
                "additionalProperties": False}
    if required:
        return call
    answer = {"type": "object", "properties": {"response": response if response is not None else {"type": "string"}},
              "required": ["response"], "additionalProperties": False}
    return {"anyOf": [call, answer]}
