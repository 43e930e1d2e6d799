"""What a chat template can print, found by rendering probes, and the rewrites for what it cannot.

The conversation is rewritten only where llama-server (common/chat.cpp's workarounds) does it:

    no system role              -> system text moved into the next user message
    arguments read as objects   -> the JSON string parsed (templates that `tojson` or iterate them)
    null content                -> "" (templates that refuse it, or print tool calls)

Tools, tool calls and tool results go to the template as they are: a template that cannot print
them leaves them out, as llama-server's prompt does (it no longer adds a tools note or rewrites
calls into JSON text; tests/fixtures/templates_llamacpp.json records it).
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass

from .template import ChatTemplate, TemplateError

_USER, _SYS = "<User Needle>", "<System Needle>"
_THOUGHTS, _CONTENT = "<Thoughts Needle>", "<Content Needle>"
_markers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ARGS = {"argument_needle": "print('Hello, World!')"}
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass(frozen=True)
class TemplateCaps:
    system_role: bool = True
    tools: bool = False  # describes `tools` itself
    tool_calls: bool = False  # prints an assistant message's tool_calls
    tool_responses: bool = False  # prints a `tool` message
    parallel_tool_calls: bool = False
    object_arguments: bool = False  # wants function.arguments as an object, not JSON text
    non_null_content: bool = False  # fails (or prints nothing) on null content


def caps_of(template: ChatTemplate) -> TemplateCaps:
    """The template's capabilities (probed once per template object; a few renders)."""
    with _lock:
        hit = _cache.get(template)
    if hit is None:
        hit = _probe(template)
        with _lock:
            _cache[template] = hit
    return hit


def _render(template: ChatTemplate, messages: list[dict], tools: list | None = None, agp: bool = False) -> str:
    try:
        return template.render(messages, add_generation_prompt=agp, tools=tools).text
    except (TemplateError, ValueError):
        return ""


def _call_msg(calls: list[dict], null_ok: bool) -> dict:
    return {"role": "assistant", "content": None if null_ok else "", "tool_calls": calls}


def _call(name: str, args) -> dict:
    return {"id": "call_1___", "type": "function", "function": {"arguments": args, "name": name}}


def _probe(t: ChatTemplate) -> TemplateCaps:
    user = {"role": "user", "content": _USER}
    system_role = _SYS in _render(t, [{"role": "system", "content": _SYS}, user])
    tool = {"name": "some_tool", "type": "function", "function": {
        "name": "some_tool", "description": "Some tool.",
        "parameters": {"type": "object", "properties": {"arg": {"type": "string", "description": "Some argument."}},
                       "required": ["arg"]}}}
    tools = "some_tool" in _render(t, [user], [tool])

    def with_content(c):
        a = {"role": "assistant", "content": c}
        return _render(t, [user, a, user, a])

    non_null = _USER in with_content("") and _USER not in with_content(None)
    null_ok = not non_null

    def has_args(s: str) -> bool:
        return any(n in s for n in ('"argument_needle"', "'argument_needle':", ">argument_needle<",
                                     "<parameter=argument_needle>"))

    as_str = has_args(_render(t, [user, _call_msg([_call("ipython", json.dumps(_ARGS))], null_ok)]))
    as_obj = has_args(_render(t, [user, _call_msg([_call("ipython", _ARGS)], null_ok)]))
    tool_calls, object_args = as_str or as_obj, as_obj and not as_str
    parallel = responses = False
    if tool_calls:
        args = _ARGS if object_args else json.dumps(_ARGS)
        out = _render(t, [user, _call_msg([_call("test_tool1", args), _call("test_tool2", args)], null_ok)])
        parallel = "test_tool1" in out and "test_tool2" in out
        out = _render(t, [user, _call_msg([_call("test_tool1", args)], null_ok),
                          {"role": "tool", "name": "test_tool1", "content": "Some response!",
                           "tool_call_id": "call_911_"}])
        responses = "Some response!" in out
    return TemplateCaps(system_role, tools, tool_calls, responses, parallel, object_args, non_null)


def reasoning_markers(template: ChatTemplate, tags) -> tuple[str, str]:
    """How the template writes an assistant message's reasoning: the text from the thinking
    opening to the reasoning, and from it to the content (whitespace included); the bare tags
    when the template does not print reasoning (llama.cpp's analysis of the template finds the same)."""
    with _lock:
        hit = _markers.get(template, {}).get(tags)
    if hit is None:
        text = _render(template, [{"role": "user", "content": _USER},
                                  {"role": "assistant", "content": _CONTENT, "reasoning_content": _THOUGHTS}])
        r, c = text.find(_THOUGHTS), text.find(_CONTENT)
        o = text.rfind(tags.open, 0, r) if r >= 0 else -1
        hit = (text[o:r], text[r + len(_THOUGHTS):c]) if 0 <= o < r < c and tags.close in text[r:c] else (
            tags.open, tags.close)
        with _lock:
            _markers.setdefault(template, {})[tags] = hit
    return hit


def _text(content) -> str:
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def polyfill(caps: TemplateCaps, messages: list[dict]) -> list[dict]:
    """`messages` rewritten into what the template can print (see the module doc)."""
    out: list[dict] = []
    pending_system = ""
    for msg in messages:
        msg = dict(msg)
        if isinstance(msg.get("tool_calls"), list) and (caps.object_arguments or not caps.tool_calls):
            # the probe found no way to print calls: objects, which templates that iterate them need
            msg["tool_calls"] = [_parsed_args(c) for c in msg["tool_calls"]]
        if msg.get("content") is None and (caps.non_null_content or caps.tool_calls):  # llama-server: "" where a template prints calls
            msg["content"] = ""
        if not caps.system_role and msg.get("content") is not None:
            if msg.get("role") == "system":
                pending_system += ("\n" if pending_system else "") + _text(msg["content"])
                continue
            if msg.get("role") == "user" and pending_system:
                body = _text(msg["content"])
                msg["content"] = pending_system + ("\n" + body if body else "")
                pending_system = ""
            elif pending_system:
                out.append({"role": "user", "content": pending_system})
                pending_system = ""
        out.append(msg)
    if pending_system:
        out.append({"role": "user", "content": pending_system})
    return out


def _parsed_args(call):
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    fn = dict(call["function"])
    if isinstance(fn.get("arguments"), str):
        try:
            fn["arguments"] = json.loads(fn["arguments"])
        except ValueError:
            pass
    return {**call, "function": fn}
