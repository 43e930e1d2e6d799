"""OpenAI Responses API: POST /v1/responses.

The request (protocol_responses.ResponsesRequest) is converted into a chat request and runs as one.
The answer is a `response` object whose `output` holds a reasoning item, a message item with an
output_text part, and function_call items (call_id "fc_" + the call's id, as llama-server).
A stream sends named events: response.created, response.in_progress, then per item
output_item.added / content_part.added and the deltas (reasoning_text.delta, output_text.delta,
function_call_arguments.delta), the matching *.done events, and response.completed.
"""

from __future__ import annotations

import time

import msgspec
from litestar import Request, Response, post

from service.api.chatjob import prepare_chat
from service.api.protocol import decode
from service.api.protocol_responses import ResponsesRequest
from service.api.responses_stream import Items, ResponseStream, new_id
from service.api.result_json import step_extras, timings_json
from service.api.runs import Runs, log_fields
from service.api.sse import stream
from service.chat.output import final_message
from service.engine.task import Final, Partial, StopType


def _response(rid: str, created: int, st, req: ResponsesRequest, status: str, output: list, ev: Final | None) -> dict:
    tools = [{k: v for k, v in msgspec.structs.asdict(t).items() if v is not None} for t in req.tools or []]
    out = {"id": rid, "object": "response", "created_at": created, "status": status, "model": st.alias,
           "output": output, "error": None, "incomplete_details": None, "instructions": req.instructions,
           "max_output_tokens": req.max_output_tokens, "parallel_tool_calls": bool(req.parallel_tool_calls),
           "temperature": req.temperature, "top_p": req.top_p, "tools": tools,
           "tool_choice": req.tool_choice or "auto", "text": {"format": {"type": "text"}}, "usage": None}
    if ev is not None:
        out["completed_at"] = int(time.time())
        out["usage"] = {"input_tokens": ev.n_prompt, "output_tokens": ev.n_predicted,
                        "total_tokens": ev.n_prompt + ev.n_predicted,
                        "input_tokens_details": {"cached_tokens": ev.n_cached},
                        "output_tokens_details": {"reasoning_tokens": 0}}
        if ev.stop_type is StopType.LIMIT:
            out["status"], out["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    return out


@post(["/v1/responses", "/responses"], status_code=200)
async def responses(request: Request) -> Response:
    st = request.app.state.server
    req = decode(await request.body(), ResponsesRequest)
    chat = req.to_chat()
    job = await prepare_chat(request, chat, n_predict=chat.max_tokens, n_probs=0)
    runs = Runs(st.engine, [job.params])
    rid, created, items, tok = new_id("resp_"), int(time.time()), Items(), st.model.tokenizer
    if not chat.stream:
        (ev,) = await runs.results(request)
        log_fields(request, ev, lambda: tok.detokenize(job.prompt))
        msg = final_message(job.plan.spec, ev.content)
        return Response(_response(rid, created, st, req, "completed", items.output(msg), ev))

    rs = ResponseStream(job.plan.spec, items, lambda status, output, ev: _response(rid, created, st, req, status,
                                                                                     output, ev))

    def frame(_: int, ev) -> list[bytes]:
        if isinstance(ev, Partial):
            return rs.partial(ev, step_extras(ev))
        log_fields(request, ev, lambda: tok.detokenize(job.prompt))
        return rs.final(ev, {"timings": timings_json(ev.timings)})

    return stream(runs, frame, head=rs.head(), on_error=rs.error)
