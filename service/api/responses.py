"""OpenAI Responses API: POST /v1/responses.

The body becomes chat-completions fields (llama-server's convert_responses_to_chatcmpl) and runs
as a chat request:

    input: a string (one user message) or items: messages ({role, content: string | input_text /
    output_text parts}), function_call {call_id, name, arguments}, function_call_output {call_id,
    output}, reasoning {content: [{text}]}; instructions -> a system message first
    tools [{"type": "function", name, description, parameters}], tool_choice, max_output_tokens,
    temperature, top_p, text.format (json_schema / json_object) -> response_format
    previous_response_id -> 400 (nothing is stored, as in llama-server)

The answer is a `response` object whose `output` holds a reasoning item, a message item with an
output_text part, and function_call items (call_id "fc_" + the call's id, as llama-server).
A stream sends named events: response.created, response.in_progress, then per item
output_item.added / content_part.added and the deltas (reasoning_text.delta, output_text.delta,
function_call_arguments.delta), the matching *.done events, and response.completed.
"""

from __future__ import annotations

import time

from litestar import Request, Response, post

from service.api.bridge import log_fields, results
from service.api.chatjob import event_stream, prepare_chat, start_runs
from service.api.errors import bad_request
from service.api.params import decode_json
from service.api.responses_stream import Items, ResponseStream, new_id
from service.chat.output import final_message
from service.engine.task import Final, Partial, StopType

_PASS = ("tool_choice", "temperature", "top_p", "top_k", "stream", "seed", "parallel_tool_calls", "reasoning_format",
         "chat_template_kwargs", "stop")


# -- request ---------------------------------------------------------------------------------

def to_chat(body: dict) -> dict:
    if body.get("previous_response_id"):
        raise bad_request("previous_response_id: this server does not store responses")
    if "input" not in body:
        raise bad_request("input: required")
    msgs: list[dict] = []
    if body.get("instructions") is not None:
        if not isinstance(body["instructions"], str):
            raise bad_request("instructions: expected a string")
        msgs.append({"role": "system", "content": body["instructions"]})
    inp = body["input"]
    if isinstance(inp, str):
        msgs.append({"role": "user", "content": inp})
    elif isinstance(inp, list):
        for i, item in enumerate(inp):
            _item(msgs, item, f"input[{i}]")
    else:
        raise bad_request("input: expected a string or an array of items")
    chat: dict = {"messages": msgs}
    if body.get("tools") is not None:
        chat["tools"] = _tools(body["tools"])
    for key in _PASS:
        if body.get(key) is not None:
            chat[key] = body[key]
    if isinstance(chat.get("tool_choice"), dict) and "function" not in chat["tool_choice"]:
        tc = chat["tool_choice"]  # Responses names the function at the top level
        chat["tool_choice"] = {"type": tc.get("type"), "function": {"name": tc.get("name")}}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {"schema": fmt.get("schema") or {}}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat


def _parts(content, where: str) -> str | list:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where}: expected a string or an array of content parts")
    out = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(p.get("text"), str):
            out.append({"type": "text", "text": p["text"]})
        elif kind == "refusal" and isinstance(p.get("refusal"), str):
            out.append({"type": "text", "text": p["refusal"]})
        elif kind in ("input_image", "input_file", "input_audio"):
            raise bad_request(f"{where}[{j}]: {kind} is not supported by this model")
        else:
            raise bad_request(f"{where}[{j}].type: unsupported content part {kind!r}")
    return out


def _assistant(msgs: list[dict]) -> dict:
    """The assistant message that output items join (a new one unless the last message is one)."""
    if not msgs or msgs[-1].get("role") != "assistant":
        msgs.append({"role": "assistant", "content": ""})
    return msgs[-1]


def _item(msgs: list[dict], item, where: str) -> None:
    if not isinstance(item, dict):
        raise bad_request(f"{where}: expected an object")
    kind, role = item.get("type"), item.get("role")
    if role in ("user", "system", "developer") and kind in (None, "message"):
        msgs.append({"role": "system" if role == "developer" else role,
                     "content": _parts(item.get("content"), f"{where}.content")})
    elif role == "assistant" and kind in (None, "message"):
        content = _parts(item.get("content"), f"{where}.content")
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        prev = _assistant(msgs)
        prev["content"] = (prev.get("content") or "") + text
    elif kind == "function_call":
        if not all(isinstance(item.get(k), str) for k in ("call_id", "name", "arguments")):
            raise bad_request(f"{where}: a function_call needs call_id, name and arguments strings")
        prev = _assistant(msgs)
        prev.setdefault("tool_calls", []).append({"id": item["call_id"], "type": "function", "function": {
            "name": item["name"], "arguments": item["arguments"]}})
    elif kind == "function_call_output":
        out = item.get("output")
        if not isinstance(item.get("call_id"), str) or not isinstance(out, (str, list)):
            raise bad_request(f"{where}: a function_call_output needs call_id and output")
        msgs.append({"role": "tool", "tool_call_id": item["call_id"], "content": _parts(out, f"{where}.output")})
    elif kind == "reasoning":
        parts = item.get("content") or []
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict)) if isinstance(parts, list) else ""
        _assistant(msgs)["reasoning_content"] = text
    else:
        raise bad_request(f"{where}: cannot tell what kind of item this is (type {kind!r}, role {role!r})")


def _tools(tools) -> list[dict]:
    if not isinstance(tools, list):
        raise bad_request("tools: expected an array")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function":
            raise bad_request(f"tools[{i}].type: only \"function\" tools are supported")
        out.append({"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}})
    return out


# -- response ------------------------------------------------------------------------------------

def _response(rid: str, created: int, st, body: dict, status: str, output: list, ev: Final | None) -> dict:
    out = {"id": rid, "object": "response", "created_at": created, "status": status, "model": st.alias,
           "output": output, "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
           "max_output_tokens": body.get("max_output_tokens"), "parallel_tool_calls": bool(body.get("parallel_tool_calls")),
           "temperature": body.get("temperature"), "top_p": body.get("top_p"), "tools": body.get("tools") or [],
           "tool_choice": body.get("tool_choice") or "auto", "text": {"format": {"type": "text"}}, "usage": None}
    if ev is not None:
        out["completed_at"] = int(time.time())
        out["usage"] = {"input_tokens": ev.n_prompt, "output_tokens": ev.n_predicted,
                        "total_tokens": ev.n_prompt + ev.n_predicted,
                        "input_tokens_details": {"cached_tokens": ev.n_cached},
                        "output_tokens_details": {"reasoning_tokens": 0}}
        if ev.stop_type is StopType.LIMIT:
            out["status"], out["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    return out


@post("/v1/responses", status_code=200)
async def responses(request: Request) -> Response:
    st = request.app.state.server
    body = decode_json(await request.body())
    chat = to_chat(body)
    stream = bool(chat.get("stream", False))
    job = await prepare_chat(request, chat, stream=stream, n_predict=chat.get("max_tokens"), n_probs=0)
    run = start_runs(st, job.params, 1)[0]
    rid, created, items, tok = new_id("resp_"), int(time.time()), Items(), st.model.tokenizer
    if not stream:
        (ev,) = await results(request, [run])
        log_fields(request, ev, lambda: tok.detokenize(job.prompt))
        msg = final_message(job.plan.spec, ev.content)
        return Response(_response(rid, created, st, body, "completed", items.output(msg), ev))

    rs = ResponseStream(job.plan.spec, items, lambda status, output, ev: _response(rid, created, st, body, status,
                                                                                     output, ev))

    def handle(ev) -> list[bytes]:
        if isinstance(ev, Partial):
            return rs.partial(ev.content)
        log_fields(request, ev, lambda: tok.detokenize(job.prompt))
        return rs.final(ev)

    return event_stream(run, handle, rs.error, head=rs.head())
