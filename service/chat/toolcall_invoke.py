"""XML invokes inside a namespaced block, MiniMax M2's and DeepSeek V3.2/V4's (DSML) tool calls:
reading them and their grammar.

    <minimax:tool_call>                       <｜DSML｜function_calls>
    <invoke name="get_weather">               <｜DSML｜invoke name="get_weather">
    <parameter name="city">Paris</parameter>  <｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>
    </invoke>                                 </｜DSML｜invoke>
    </minimax:tool_call>                      </｜DSML｜function_calls>

A block may hold several invokes, and several blocks may follow one another. A parameter's text
becomes JSON by the tool's schema as Qwen3-Coder's does (toolcall_xml.typed_value); DSML says
itself whether a value is a string (`string="true"`) or JSON (`"false"`). The prompt opens the
thinking block, which reasoning.py splits off. Content before the calls is kept as written by
MiniMax and without its trailing blank lines by DSML (llama.cpp's fixtures). While streaming, a
call is announced once its name's quote closes and grows parameter by parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from service.sampling.lazy import WS, LazyGrammar, Marker, json_rule

from .chatmsg import ToolCall
from .partial_json import dumps
from .partial_json import skip_spaces as _ws
from .reasoning import partial_suffix
from .toolcall_xml import schema_types, typed_value


@dataclass(frozen=True)
class Dialect:
    block: str  # the block's tag name
    ns: str  # what precedes the invoke and parameter tags' names
    typed: bool  # parameters carry string="true|false"
    strip: bool  # content before the calls loses its trailing whitespace

    def tag(self, name: str, close: bool = False) -> str:
        return f"</{name}>" if close else f"<{name}>"


MINIMAX = Dialect("minimax:tool_call", "", typed=False, strip=False)
DSML = Dialect("｜DSML｜function_calls", "｜DSML｜", typed=True, strip=True)
DSML_V4 = Dialect("｜DSML｜tool_calls", "｜DSML｜", typed=True, strip=True)  # DeepSeek V4 renames only the block


class InvokeParseError(ValueError):
    pass


def parse(text: str, partial: bool, schemas: dict[str, dict], d: Dialect = MINIMAX) -> tuple[str, list[ToolCall]]:
    block, end_block = d.tag(d.block), d.tag(d.block, True)
    at = text.find(block)
    if at < 0:
        return (text[:partial_suffix(text, block)] if partial else text), []
    content, calls, pos = text[:at], [], at
    if d.strip:
        content = content.rstrip()
    invoke = re.compile(re.escape(f"<{d.ns}invoke") + r' name="([^"]+)">')
    while True:  # blocks
        pos = _ws(text, pos)
        if pos >= len(text):
            return content, calls
        if not text.startswith(block, pos):
            if partial:
                return content, calls
            raise InvokeParseError("text after the tool calls")
        pos += len(block)
        while True:  # invokes
            pos = _ws(text, pos)
            if text.startswith(end_block, pos):
                pos += len(end_block)
                break
            m = invoke.match(text, pos)
            if m is None:
                if partial:
                    return content, calls
                raise InvokeParseError("expected <invoke name=...> or the end of the block")
            call, pos, done = _invoke(text, m, (schemas.get(m.group(1)) or {}).get("properties") or {}, partial, d)
            calls.append(call)
            if not done:
                return content, calls


def _invoke(text: str, m: re.Match, props: dict, partial: bool, d: Dialect) -> tuple[ToolCall, int, bool]:
    end_invoke, end_param = d.tag(d.ns + "invoke", True), d.tag(d.ns + "parameter", True)
    param = re.compile(re.escape(f"<{d.ns}parameter") + r' name="([^"]+)"(?: string="(true|false)")?>')
    name, args, pos = m.group(1), [], m.end()
    while True:
        pos = _ws(text, pos)
        if text.startswith(end_invoke, pos):
            return ToolCall(name, "{" + ",".join(args) + "}"), pos + len(end_invoke), True
        p = param.match(text, pos)
        end = text.find(end_param, p.end()) if p is not None else -1
        if end < 0:
            break
        key, raw = p.group(1), text[p.end():end]
        args.append(f"{dumps(key)}:{dumps(_typed(raw, p.group(2), props.get(key)))}")
        pos = end + len(end_param)
    if not partial:
        raise InvokeParseError(f"unfinished call of {name}")
    return ToolCall(name, "{" + ",".join(args)), len(text), False


def _typed(raw: str, string: str | None, schema: dict | None):
    """A value by what the model said of it (DSML's string attribute), else by the schema."""
    if string == "true":
        return raw
    if string == "false":
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return typed_value(raw, schema)


# -- the grammar -------------------------------------------------------------------------------

def grammar(g: LazyGrammar, functions: list[dict], *, required: bool, parallel: bool,
            marker: Callable[[str], Marker], after: Marker | None, d: Dialect = MINIMAX) -> str:
    """A block of invokes of `functions` (several when parallel); lazy on the block's opening tag
    unless a call is required. A string value is any text up to its closing tag, others JSON."""
    open_, close = marker(d.tag(d.block)), marker(d.tag(d.block, True))
    end_param = _lit(d.tag(d.ns + "parameter", True))
    g.rule("mm_text[lazy]", f"LAZY_TEXT {end_param}")
    alts = []
    for k, fn in enumerate(functions):
        props = (fn.get("parameters") or {}).get("properties") or {}
        params = []
        for j, (key, schema) in enumerate(props.items()):
            text = "string" in schema_types(schema)
            attr = f' string="{str(text).lower()}"' if d.typed else ""
            head = _lit(f"<{d.ns}parameter name={json.dumps(key, ensure_ascii=False)}{attr}>")
            value = "mm_text" if text else f"{json_rule(schema)} {end_param}"
            params.append(g.rule(f"mm_{k}_{j}", f"{WS} {head} {value}"))
        body = f"({' | '.join(params)})*" if params else ""
        head = _lit(f"<{d.ns}invoke name={json.dumps(fn['name'], ensure_ascii=False)}>")
        alts.append(g.rule(f"mm_{k}", f"{head} {body} {WS} {_lit(d.tag(d.ns + 'invoke', True))}"))
    one = f"{WS} ({' | '.join(alts)})"
    g.rule("calls", f"({one}){'+' if parallel else ''} {WS} {close.lark()}")
    return g.forced(f"{WS} {open_.lark()} calls", after) if required else g.lazy([open_], "calls")


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
