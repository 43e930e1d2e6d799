"""What a chat template can print, found by rendering probes, and the rewrites for what it cannot.

Many templates know nothing of tools: SmolLM2's prints `role` and `content` and nothing else, so an
assistant message carrying only `tool_calls` would vanish (or fail on its null content) and a
`tool` message would look like a user turn from nobody. As llama.cpp does (minja's polyfills), the
template is probed once with needle messages, and a conversation is rewritten into what it can print:

    tools it cannot describe    -> a system note listing the tools as JSON, with an example call
                                   rendered through the template itself
    assistant tool_calls        -> content {"tool_calls": [{"name", "arguments", "id"}]} (indented JSON)
    tool results                -> a user message {"tool_response": {"tool", "content", "tool_call_id"}}
    no system role              -> system text moved into the next user message
    arguments read as objects   -> the JSON string parsed (templates that `tojson` the arguments)
    null content refused        -> ""
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass

from .template import ChatTemplate, TemplateError

_USER, _SYS = "<User Needle>", "<System Needle>"
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
    tool_call_example: str = ""  # how an assistant tool call prints (for the tools note)


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
    caps = TemplateCaps(system_role, tools, tool_calls, responses, parallel, object_args, non_null)
    if not tools:
        caps = TemplateCaps(**{**caps.__dict__, "tool_call_example": _example(t, caps)})
    return caps


def _example(t: ChatTemplate, caps: TemplateCaps) -> str:
    """How the template prints an assistant tool call: the rendered difference between a
    conversation ending in a generation prompt and the same one with the call appended."""
    user = {"role": "user", "content": "Hey"}
    args = {"arg1": "some_value"}
    call = _call_msg([_call("tool_name", args if caps.object_arguments else json.dumps(args, separators=(",", ":")))],
                     not caps.non_null_content)
    prefix = _render(t, polyfill(caps, [user], None), agp=True)
    full = _render(t, polyfill(caps, [user, call], None))
    eos = t.eos_token
    if eos:
        at = full.rfind(eos)
        if at >= 0 and (at == len(prefix) - len(eos) or (full.endswith("\n") and at == len(full) - len(eos) - 1)):
            full = full[:at]
    common = 0
    for i in range(min(len(prefix), len(full))):
        if prefix[i] != full[i]:
            break
        if prefix[i] != "<":  # never cut inside what may be a tag's start
            common = i + 1
    example = full[common:]
    return example if "tool_name" in example or "some_value" in example else ""


def add_system(messages: list[dict], text: str) -> list[dict]:
    """`text` appended to the system message (one is added first when there is none)."""
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0], content=f"{_text(messages[0].get('content'))}\n\n{text}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _text(content) -> str:
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def polyfill(caps: TemplateCaps, messages: list[dict], tools: list | None) -> list[dict]:
    """`messages` rewritten into what the template can print (see the module doc)."""
    if tools and not caps.tools:
        note = "You can call any of the following tools to satisfy the user's requests: " + \
               json.dumps(tools, indent=2, ensure_ascii=False)
        if caps.tool_call_example:
            note += "\n\nExample tool call syntax:\n\n" + caps.tool_call_example + "\n\n"
        messages = add_system(messages, note)
    out: list[dict] = []
    pending_system = ""
    for msg in messages:
        msg = dict(msg)
        if isinstance(msg.get("tool_calls"), list) and (caps.object_arguments or not caps.tool_calls):
            msg["tool_calls"] = [_parsed_args(c) for c in msg["tool_calls"]]
        if isinstance(msg.get("tool_calls"), list) and not caps.tool_calls:
            obj: dict = {"tool_calls": [_plain_call(c) for c in msg.pop("tool_calls") if isinstance(c, dict)]}
            if _text(msg.get("content")):
                obj["content"] = _text(msg.get("content"))
            msg["content"] = json.dumps(obj, indent=2, ensure_ascii=False)
        if msg.get("role") == "tool" and not caps.tool_responses:
            resp: dict = {}
            if "name" in msg:
                resp["tool"] = msg.pop("name")
            resp["content"] = msg.get("content")
            if "tool_call_id" in msg:
                resp["tool_call_id"] = msg["tool_call_id"]
            msg["role"], msg["content"] = "user", json.dumps({"tool_response": resp}, indent=2, ensure_ascii=False)
        if msg.get("content") is None and caps.non_null_content:
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


def _plain_call(call: dict) -> dict:
    fn = call.get("function") if isinstance(call.get("function"), dict) else {}
    entry = {"name": fn.get("name"), "arguments": fn.get("arguments")}
    if "id" in call:
        entry["id"] = call["id"]
    return entry
