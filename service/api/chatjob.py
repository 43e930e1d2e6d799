"""A chat request made ready to run, shared by the three chat dialects (OpenAI chat, Anthropic
Messages, OpenAI Responses): each converts its body to chat-completions fields first, as
llama-server does, then differs only in how the answer is framed.

    job = await prepare_chat(request, body, stream=True, n_predict=..., n_probs=0)
    runs = start_runs(st, job.params, n)
    stream = OutputStream(job.plan.spec)              # per choice: deltas while streaming
    msg = final_message(job.plan.spec, final.content) # or the whole answer at once
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import msgspec
from litestar import Request
from litestar.response import Stream

from service.api.bridge import TaskRun
from service.api.completion import builder
from service.api.errors import ApiError, bad_request
from service.api.params import ParamBuilder
from service.api.sse import HEADERS
from service.chat.plan import ChatPlan, build_plan
from service.chat.reasoning import reasoning_format
from service.engine.task import Event, Failure, Final, StopType, TaskParams

_GRAMMAR_FIELDS = ("grammar", "json_schema", "response_format")
_enc = msgspec.json.Encoder()


@dataclass
class ChatJob:
    plan: ChatPlan
    prompt: list[int]
    params: TaskParams


def grammar_compiler(b: ParamBuilder):
    """The model's GrammarCompiler, shared with ParamBuilder (built on first use, ~1 s)."""
    return b.grammar_compiler()


async def plan_chat(request: Request, body: dict, *, stream: bool, compile_grammar: bool = True) -> ChatPlan:
    """The request's ChatPlan, built off the event loop; client mistakes are 400s."""
    from service.chat import TemplateError

    st = request.app.state.server
    b = builder(request)
    if not st.args.jinja and body.get("tools"):  # llama-server's refusal, word for word
        raise bad_request("tools param requires --jinja flag")
    default = reasoning_format(st.args.reasoning_format, "--reasoning-format")  # checked at startup

    def build() -> ChatPlan:
        compiler = grammar_compiler(b) if compile_grammar and body.get("tools") else None
        return build_plan(st.template, body, tokenizer=b.tok, compiler=compiler, default_reasoning=default,
                          stream=stream)

    try:
        return await asyncio.to_thread(build)
    except TemplateError as e:
        if getattr(e, "client_error", False):
            raise bad_request(str(e)) from None
        raise ApiError(500, f"the chat template failed: {e}") from None
    except ValueError as e:  # malformed messages or tools, an invalid tool schema
        raise bad_request(str(e)) from None


async def prepare_chat(request: Request, body: dict, *, stream: bool, n_predict: int | None,
                       n_probs: int | None) -> ChatJob:
    plan = await plan_chat(request, body, stream=stream)
    b = builder(request)
    prompt = plan.rendered.tokenize(b.tok)
    if plan.constraint is not None:  # the tool grammar replaces the request's own constraint
        body = {k: v for k, v in body.items() if k not in _GRAMMAR_FIELDS}
    params = b.task(body, prompt, n_predict=n_predict, stream=stream, n_probs=n_probs)
    if plan.constraint is not None or plan.stops:
        params = dataclasses.replace(params, constraint=plan.constraint or params.constraint,
                                     stop=params.stop + tuple(s for s in plan.stops if s not in params.stop))
    return ChatJob(plan, prompt, params)


def start_runs(st, params: TaskParams, n: int) -> list[TaskRun]:
    """n runs of the task (the engine gives each its own copy of a grammar constraint)."""
    return [TaskRun(st.engine, params) for _ in range(n)]


def finish_kind(ev: Final, has_calls: bool) -> str:
    """OpenAI's finish_reason: length when cut off, tool_calls when the answer calls tools."""
    if ev.stop_type is StopType.LIMIT:
        return "length"
    return "tool_calls" if has_calls else "stop"


def named_event(name: str, data: dict) -> bytes:
    """An SSE event with a name line, as the Anthropic and Responses streams frame them."""
    return b"event: " + name.encode() + b"\ndata: " + _enc.encode(data) + b"\n\n"


def event_stream(run: TaskRun, handle: Callable[[Event], list[bytes]], on_error: Callable[[Failure], bytes],
                 head: list[bytes] | None = None) -> Stream:
    """An SSE response for one run: `handle` frames each event; a failure ends the stream with
    `on_error`; a client that leaves cancels the run."""

    async def gen() -> AsyncIterator[bytes]:
        try:
            for chunk in head or []:
                yield chunk
            async for ev in run.events():
                if isinstance(ev, Failure):
                    yield on_error(ev)
                    return
                for chunk in handle(ev):
                    yield chunk
        finally:
            run.cancel()

    return Stream(gen(), media_type="text/event-stream", headers=HEADERS)
