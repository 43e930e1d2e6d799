"""Which tool-call syntax a model writes, and reading its calls out of the output text.

The format follows from the chat template in force, in llama.cpp's order (common/chat.cpp):

    HERMES_2_PRO   the template mentions `<tool_call>` (Hermes 2/3 Pro, Qwen 2.5, Qwen 3):
                   <tool_call>{"name": "f", "arguments": {...}}</tool_call>, several allowed;
                   also the `<function=f>{...}</function>` spelling and a bare {"name": ...} object
    GENERIC        tools together with a JSON schema for the answer, or a template that knows
                   no tool syntax (SmolLM2's): the whole output is one JSON object,
                   {"tool_call": {"name", "arguments"}}, {"tool_calls": [...]} or {"response": ...}
    CONTENT_ONLY   no tools (or tool_choice "none"): everything is content
    LLAMA_3_X      the template has an `ipython` role: {"name": "f", "parameters": {...}}
    MISTRAL_NEMO   the template mentions `[TOOL_CALLS]`: [TOOL_CALLS][{"name", "arguments", "id"}]

and the formats with a module of their own (toolcall_families.py: Qwen3-Coder XML, DeepSeek,
Kimi K2, ...), recognised before the `<tool_call>` check; gpt-oss's harmony is output.py's.

parse_calls(fmt, text, partial) returns (content, calls). A final parse (partial=False) raises
ToolParseError on malformed output (the caller then keeps the text as content, as llama-server
does); a partial parse never raises: it returns what is certain and holds back a tail that may
still turn into a call.
"""

from __future__ import annotations

import enum
import re

from . import toolcall_families
from .chatmsg import ToolCall
from .partial_json import Node, canonical, skip_ws
from .reasoning import partial_suffix
from .toolcall_json import ToolParseError, call_of, generic, json_at, nemo


class ToolFormat(enum.Enum):
    CONTENT_ONLY = "Content-only"
    GENERIC = "Generic"
    HERMES_2_PRO = "Hermes 2 Pro"
    LLAMA_3_X = "Llama 3.x"
    MISTRAL_NEMO = "Mistral Nemo"
    QWEN3_CODER = "Qwen3 Coder"  # toolcall_xml.py
    GPT_OSS = "GPT-OSS"  # harmony.py: channels, with or without tools
    DEEPSEEK_R1 = "DeepSeek R1"  # toolcall_deepseek.py
    DEEPSEEK_V3_1 = "DeepSeek V3.1"
    KIMI_K2 = "Kimi K2"  # toolcall_kimi.py; the formats with a module of their own: toolcall_families.py
    GLM_4_5 = "GLM 4.5"  # toolcall_glm.py (GLM 4.5, 4.6, 4.7)
    FUNCTIONARY_V3_1 = "Functionary v3.1"  # toolcall_functionary.py
    FUNCTIONARY_V3_2 = "Functionary v3.2"
    COMMAND_R7B = "Command R7B"  # toolcall_command_r7b.py
    COHERE2_MOE = "Cohere2 MoE"  # toolcall_command_r7b.py (<|START_TEXT|> markers)
    GRANITE = "Granite"  # toolcall_granite.py (3.x; 4.x writes Hermes 2 Pro's calls)
    MINIMAX_M2 = "MiniMax M2"  # toolcall_invoke.py
    DEEPSEEK_V3_2 = "DeepSeek V3.2"  # toolcall_invoke.py (DSML)
    DEEPSEEK_V4 = "DeepSeek V4"  # toolcall_invoke.py (DSML, the block named tool_calls)
    LFM2 = "LFM2"  # toolcall_lfm2.py (LFM2, LFM2.5)
    GEMMA_4 = "Gemma 4"  # toolcall_gemma4.py: thought channels too, with or without tools
    KIMI_K3 = "Kimi K3"  # toolcall_kimi_k3.py: <|open|>/<|close|> sections, with or without tools
    MINIMAX_M3 = "MiniMax M3"  # toolcall_minimax_m3.py
    GIGACHAT_3 = "GigaChat 3"  # toolcall_gigachat.py
    GIGACHAT_3_1 = "GigaChat 3.1"
    MINICPM5 = "MiniCPM5"  # toolcall_minicpm5.py
    MUSE_GLIMMER = "Muse Glimmer"  # toolcall_muse.py: messages to recipients, with or without tools
    LING_3 = "Ling 3"  # toolcall_ling3.py: GLM's calls in <role> sections, with or without tools
    MINISTRAL_3 = "Ministral 3"  # toolcall_ministral.py (Ministral 3, Magistral, Devstral)


def detect(source: str, *, tools: bool, choice_none: bool, schema: bool) -> ToolFormat:
    """The format for a template source and a request (tools given, tool_choice "none", a JSON schema asked for)."""
    if "<|channel|>" in source and not schema:
        return ToolFormat.GPT_OSS
    own = toolcall_families.recognise(source)
    if own is not None and not schema:
        return ToolFormat(own)
    if "<tool_call>" in source and not schema:
        return ToolFormat.HERMES_2_PRO
    if tools and schema:
        return ToolFormat.GENERIC
    if not tools or choice_none:
        return ToolFormat.CONTENT_ONLY
    if "<|start_header_id|>ipython<|end_header_id|>" in source:
        return ToolFormat.LLAMA_3_X
    if "[TOOL_CALLS]" in source:
        return ToolFormat.MISTRAL_NEMO
    return ToolFormat.GENERIC


def parse_calls(fmt: ToolFormat, text: str, partial: bool, schemas: dict | None = None) -> tuple[str, list[ToolCall]]:
    if fmt is ToolFormat.CONTENT_ONLY:
        return text, []
    own = toolcall_families.family(fmt.value)
    if own is not None:  # content kept as written (llama.cpp's fixtures)
        try:
            content, calls = own.parse(text, partial, schemas)
        except own.error as e:
            raise ToolParseError(str(e)) from None
        if calls and not content.strip():  # the blank line a model writes before its calls is no answer
            content = ""
        return (content.rstrip() if partial else content), calls
    parser = {ToolFormat.GENERIC: generic, ToolFormat.HERMES_2_PRO: _hermes,
              ToolFormat.LLAMA_3_X: _llama3, ToolFormat.MISTRAL_NEMO: nemo}[fmt]
    content, calls = parser(text, partial)
    # With calls the content is stripped (llama-server); while streaming, trailing whitespace
    # waits for what follows it, so that what was sent stays a prefix of the final content.
    if partial:
        return content.rstrip(), calls
    return (content.strip() if calls else content), calls


# -- shared pieces ---------------------------------------------------------------------------------

_CALL_HEADS = ('{"name":',)  # how a bare JSON call begins, whitespace aside


def _maybe_call(tail: str, heads: tuple[str, ...] = _CALL_HEADS) -> bool:
    """Whether text that ends the output may still grow into the start of a call."""
    squeezed = re.sub(r"\s+", "", tail)
    return any(h.startswith(squeezed) for h in heads)


def _hold(text: str, start: int, words: tuple[str, ...]) -> int:
    """Where a tail that may still become one of `words` (or a bare JSON call) begins."""
    cut = len(text)
    for w in words:
        cut = min(cut, max(start, partial_suffix(text, w)))
    brace = text.rfind("{", start)
    if brace >= 0 and _maybe_call(text[brace:]):
        cut = min(cut, brace)
    fn = text.rfind("<function", start)
    if fn >= 0 and ">" not in text[fn:]:  # <function=name or <function name="...: the name is still coming
        cut = min(cut, fn)
    fence = _FENCE_TAIL.search(text[start:cut])  # a code fence right before what is held may belong to it
    if fence is not None:
        cut = start + fence.start()
    return cut


_FENCE_TAIL = re.compile(r"```(?:json|xml)?(?:\n\s*)?$")


# -- Hermes 2 Pro -----------------------------------------------------------------------------------

_TAGS = ("<tool_call>", "<function_call>", "<tools>", "<response>", "<json>", "<xml>", "<JSON>")
_HERMES_OPEN = re.compile(
    r"(?P<fence>```(?:json|xml)?\n\s*)?(?:(?P<tag>" + "|".join(map(re.escape, _TAGS)) + r")\s*|(?=\{\s*\"name\"\s*:))"
    r"|<function=(?P<fn1>[^>]+)>|<function\s+name\s*=\s*\"(?P<fn2>[^\"]+)\"\s*>")
_HERMES_WORDS = (*_TAGS, "<function", "```json\n", "```xml\n")


def _hermes(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    content, calls, pos = [], [], 0
    while True:
        hold = _hold(text, pos, _HERMES_WORDS) if partial else len(text)
        m = _HERMES_OPEN.search(text, pos)
        if m is None or m.start() >= hold:
            content.append(text[pos:hold])
            return "".join(content), calls
        content.append(text[pos:m.start()])
        named = m.group("fn1") or m.group("fn2")
        node = json_at(text, m.end(), partial)
        if node is None or not node.complete:  # unfinished (or broken, while streaming): the call so far
            if not partial:
                raise ToolParseError("unfinished tool call")
            call = _json_call(node, named) if node is not None and node.kind == "obj" else None
            if call is not None:
                calls.append(call)
            return "".join(content), calls
        call = _json_call(node, named) if node.kind == "obj" else None
        if call is None:  # a tag around something that is no call: plain text
            content.append(text[m.start():node.end])
            pos = node.end
            continue
        calls.append(call)
        closes = ["</function>"] if named else ([f"</{m.group('tag')[1:]}"] if m.group("tag") else [])
        if m.group("fence"):
            closes.append("```")
        pos, done = _expect(text, node.end, closes, partial)
        if done:
            return "".join(content), calls


def _json_call(node: Node, named: str | None) -> ToolCall | None:
    if named:  # <function=name>{arguments}
        return ToolCall(named, canonical(node) if node.kind == "obj" else "")
    return call_of(node)


def _expect(text: str, i: int, closes: list[str], partial: bool) -> tuple[int, bool]:
    """Read the closing tags after a call: (position after them, whether parsing must stop)."""
    for close in closes:
        i = skip_ws(text, i)
        if text.startswith(close, i):
            i += len(close)
        elif i >= len(text) or (partial and close.startswith(text[i:])):
            return len(text), True  # not there yet, or the output ended without it
        elif partial:
            return len(text), True
        else:
            raise ToolParseError(f"expected {close!r} after a tool call")
    return i, False


# -- Llama 3.x ------------------------------------------------------------------------------------

_LLAMA_CALL = re.compile(r'\{\s*(?:"type"\s*:\s*"function"\s*,\s*)?"name"\s*:\s*"')
_LLAMA_HEADS = ('{"type":"function","name":"', '{"name":"')


def _top_level(text: str, pattern: re.Pattern) -> re.Match | None:
    """The first match that is not nested inside a JSON-like object or array of the text before
    it: a {"name": ...} inside another object (a schema the model is quoting) is no call, and a
    stream must not announce one that the final parse would then refuse."""
    depth, in_str, esc, last = 0, False, False, 0
    for m in pattern.finditer(text):
        for ch in text[last:m.start()]:
            if in_str:
                esc, in_str = (False, True) if esc else (ch == "\\", ch != '"')
            elif ch == '"':
                in_str = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth = max(0, depth - 1)
        last = m.start()
        if depth == 0 and not in_str:
            return m
    return None


def _llama3(text: str, partial: bool) -> tuple[str, list[ToolCall]]:
    text = text.replace("<|python_tag|>", "")
    m = _top_level(text, _LLAMA_CALL)
    if m is None:
        if partial:
            brace = text.rfind("{")
            if brace >= 0 and _maybe_call(text[brace:], _LLAMA_HEADS):
                return text[:brace], []
        return text, []
    content, calls, i = text[:m.start()], [], m.start()
    while i < len(text):
        node = json_at(text, i, partial)
        if node is None or node.kind != "obj":
            if partial:
                break
            raise ToolParseError("malformed Llama 3.x tool call")
        call = call_of(node, "parameters")
        if call is not None:
            calls.append(call)
        if not node.complete:
            if not partial:
                raise ToolParseError("unfinished tool call")
            break
        if call is None:
            if not partial:
                raise ToolParseError("a Llama 3.x tool call needs a name")
            break
        i = skip_ws(text, node.end)
        if text.startswith(";", i):
            i = skip_ws(text, i + 1)
        if i < len(text) and text[i] != "{":
            if partial:
                break
            raise ToolParseError("extra text after the tool calls")
    return content, calls
