"""The tool-call formats that have a module of their own: how each is recognised in a chat
template, and which module reads the calls out of the model's output.

Recognition follows llama.cpp (common/chat.cpp): its dedicated templates are looked for first, in
its order, then the markers its automatic parser would find in these families' templates. The
first family whose markers the template source has wins (GLM's templates also mention
`<tool_call>`, so GLM comes before the Qwen3-Coder and Hermes checks in toolcall_formats.py).

Every module here returns the content before the calls as the model wrote it (llama.cpp's
fixtures keep it so); while streaming, trailing whitespace waits for what follows it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import (
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
    toolcall_ling3,
    toolcall_minicpm5,
    toolcall_minimax_m3,
    toolcall_ministral,
    toolcall_muse,
    toolcall_xml,
)
from .chatmsg import ToolCall

Parse = Callable[[str, bool, dict | None], tuple[str, list[ToolCall]]]  # schemas: None without tools


@dataclass(frozen=True)
class Family:
    value: str  # the ToolFormat's value
    recognise: Callable[[str], bool]
    parse: Parse
    error: type[ValueError]
    framed: bool = False  # every answer is written in the format, tools or not: always parsed


def _has(*needles: str) -> Callable[[str], bool]:
    return lambda source: all(n in source for n in needles)


_V31 = re.compile(r"tool▁call▁begin｜>'\s*\+\s*tool\['function'\]\['name'\]")
_GLUED = "'<tool_call><function=' ~ tool_call.name ~ '>'"  # a template that writes no newlines there (llama.cpp)


def _deepseek(v31: bool) -> Callable[[str], bool]:
    return lambda s: "<｜tool▁calls▁begin｜>" in s and bool(_V31.search(s)) == v31


def _gemma4(text: str, partial: bool, schemas: dict | None) -> tuple[str, list[ToolCall]]:
    msg = toolcall_gemma4.message(text, partial, reasoning=False, tools=schemas is not None)
    return msg.content, msg.tool_calls


def _muse(text: str, partial: bool, schemas: dict | None) -> tuple[str, list[ToolCall]]:
    msg = toolcall_muse.message(text, partial, reasoning=False, schemas=schemas)
    return msg.content, msg.tool_calls


def _ling3(text: str, partial: bool, schemas: dict | None) -> tuple[str, list[ToolCall]]:
    msg = toolcall_ling3.message(text, partial, reasoning=False, opened=False, schemas=schemas)
    return msg.content, msg.tool_calls


FAMILIES = [
    # output.py reads its messages to self itself; this reading keeps them in the content
    Family("Muse Glimmer", toolcall_muse.recognise, _muse, toolcall_muse.MuseParseError, framed=True),
    # before Mistral Nemo's [TOOL_CALLS] list (toolcall_formats.py); llama.cpp looks for it first
    Family("Ministral 3", toolcall_ministral.recognise,
           lambda text, partial, schemas: toolcall_ministral.parse(text, partial), toolcall_ministral.MinistralParseError),
    Family("Functionary v3.2", _has(">>>all", ">>>${recipient}"),
           lambda text, partial, schemas: toolcall_functionary.parse_v32(text, partial, schemas is not None),
           toolcall_functionary.FunctionaryParseError, framed=True),
    Family("Kimi K2", _has("<|tool_calls_section_begin|>", "<|tool_call_begin|>"),
           lambda text, partial, schemas: toolcall_kimi.parse(text, partial), toolcall_kimi.KimiParseError),
    Family("Kimi K3", toolcall_kimi_k3.recognise, toolcall_kimi_k3.parse, toolcall_kimi_k3.KimiK3ParseError, framed=True),
    # before GLM's and Qwen3-Coder's <tool_call> checks: M3 writes that tag behind its namespace token
    Family("MiniMax M3", toolcall_minimax_m3.recognise, toolcall_minimax_m3.parse, toolcall_minimax_m3.MiniMaxM3ParseError,
           framed=True),
    # DeepSeek V3.2 names its DSML token in a template variable, not in the markup (llama.cpp)
    Family("DeepSeek V3.2", lambda s: _has("dsml_token", "DSML", "function_calls")(s),
           lambda text, partial, schemas: toolcall_invoke.parse(text, partial, schemas or {}, toolcall_invoke.DSML),
           toolcall_invoke.InvokeParseError),
    # V4 writes V3.2's invokes in a block named tool_calls
    Family("DeepSeek V4", _has("dsml_token", "DSML", "dsml_token + 'tool_calls>"),
           lambda text, partial, schemas: toolcall_invoke.parse(text, partial, schemas or {}, toolcall_invoke.DSML_V4),
           toolcall_invoke.InvokeParseError),
    Family("DeepSeek V3.1", _deepseek(True),
           lambda text, partial, schemas: toolcall_deepseek.parse(text, partial), toolcall_deepseek.DeepSeekParseError),
    Family("DeepSeek R1", _deepseek(False),
           lambda text, partial, schemas: toolcall_deepseek.parse(text, partial), toolcall_deepseek.DeepSeekParseError),
    Family("Cohere2 MoE", _has("<|START_TEXT|>", "<|START_ACTION|>"),
           lambda text, partial, schemas: toolcall_command_r7b.parse(
               text, partial, schemas is not None, (toolcall_command_r7b.TEXT, toolcall_command_r7b.END_TEXT)),
           toolcall_command_r7b.CommandR7BParseError, framed=True),
    Family("Command R7B", _has("<|START_ACTION|>", "<|START_RESPONSE|>"),
           lambda text, partial, schemas: toolcall_command_r7b.parse(text, partial, schemas is not None),
           toolcall_command_r7b.CommandR7BParseError, framed=True),
    Family("Granite", _has("<|tool_call|>", "<|start_of_role|>"),
           lambda text, partial, schemas: toolcall_granite.parse(text, partial), toolcall_granite.GraniteParseError),
    # LFM2 lists the tools between markers, LFM2.5 in plain text
    # 3.0's role separators, or 3.1's <|function_call|> token (recognised here as llama.cpp's tests read it)
    Family("GigaChat 3", lambda s: toolcall_gigachat.recognise(s) and toolcall_gigachat.V31 not in s,
           lambda text, partial, schemas: toolcall_gigachat.parse(text, partial, toolcall_gigachat.V3),
           toolcall_gigachat.GigaChatParseError),
    Family("GigaChat 3.1", lambda s: toolcall_gigachat.recognise(s) and toolcall_gigachat.V31 in s,
           lambda text, partial, schemas: toolcall_gigachat.parse(text, partial, toolcall_gigachat.V31),
           toolcall_gigachat.GigaChatParseError),
    Family("MiniCPM5", toolcall_minicpm5.recognise, toolcall_minicpm5.parse, toolcall_minicpm5.MiniCPM5ParseError),
    Family("LFM2", lambda s: _has("<|tool_list_start|>", "<|tool_list_end|>")(s) or (
        "List of tools: [" in s and "<|tool_list_start|>" not in s),
           lambda text, partial, schemas: toolcall_lfm2.parse(text, partial), toolcall_lfm2.Lfm2ParseError),
    Family("MiniMax M2", _has("<minimax:tool_call>"),
           lambda text, partial, schemas: toolcall_invoke.parse(text, partial, schemas or {}),
           toolcall_invoke.InvokeParseError),
    # output.py reads Gemma 4's thought channels itself; this reading keeps them in the content
    Family("Gemma 4", lambda s: "'<|tool_call>call:'" in s, _gemma4, toolcall_gemma4.Gemma4ParseError, framed=True),
    # output.py reads its thoughts itself; this reading keeps them in the content
    Family("Ling 3", toolcall_ling3.recognise, _ling3, toolcall_glm.GlmParseError, framed=True),
    Family("GLM 4.5", lambda s: _has("<tool_call>", "<arg_key>", "<arg_value>")(s) and "<role>ASSISTANT</role>" not in s,
           lambda text, partial, schemas: toolcall_glm.parse(text, partial, schemas or {}), toolcall_glm.GlmParseError),
    Family("Functionary v3.1", _has("<function=", "<|start_header_id|>ipython<|end_header_id|>"),
           lambda text, partial, schemas: toolcall_functionary.parse_v31(text, partial),
           toolcall_functionary.FunctionaryParseError),
    Family("Qwen3 Coder", lambda s: _has("<tool_call>", "<function=", "<parameter=")(s) and _GLUED not in s,
           toolcall_xml.parse, toolcall_xml.XmlParseError),
]
_BY_VALUE = {f.value: f for f in FAMILIES}


def recognise(source: str) -> str | None:
    """The value of the family whose markers the template has, or None."""
    return next((f.value for f in FAMILIES if f.recognise(source)), None)


def family(value: str) -> Family | None:
    return _BY_VALUE.get(value)


def framed(value: str) -> bool:
    """Whether answers in this format are read as such even without tools."""
    f = _BY_VALUE.get(value)
    return f is not None and f.framed
