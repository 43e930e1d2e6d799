"""A chat request made ready to run, shared by the three chat dialects (OpenAI chat, Anthropic
Messages, OpenAI Responses): each converts its request into a ChatRequest first, as llama-server
does, then differs only in how the answer is framed.

    job = await prepare_chat(request, chat, n_predict=..., n_probs=0)
    runs = Runs(st.engine, copies(job.params, n))
    stream = OutputStream(job.plan.spec)              # per choice: deltas while streaming
    msg = final_message(job.plan.spec, final.content) # or the whole answer at once
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from litestar import Request

from service.api.errors import ApiError, bad_request
from service.api.params import builder
from service.api.protocol_openai import ChatRequest, chat_input
from service.chat.plan import ChatPlan, build_plan
from service.chat.reasoning import reasoning_format
from service.engine.task import TaskParams


@dataclass
class ChatJob:
    plan: ChatPlan
    prompt: list[int]
    params: TaskParams


async def plan_chat(request: Request, chat: ChatRequest, *, compile_grammar: bool = True) -> ChatPlan:
    """The request's ChatPlan, built off the event loop; client mistakes are 400s."""
    from service.chat import TemplateError

    st = request.app.state.server
    b = builder(request)
    if not st.args.jinja and chat.tools:  # llama-server's refusal, word for word
        raise bad_request("tools param requires --jinja flag")
    inp = chat_input(chat)
    default = reasoning_format(st.args.reasoning_format, "--reasoning-format")  # checked at startup

    def build() -> ChatPlan:
        compiler = b.grammar_compiler() if compile_grammar and inp.tools is not None else None
        return build_plan(st.template, inp, tokenizer=b.tok, compiler=compiler, default_reasoning=default,
                          stream=chat.stream)

    try:
        return await asyncio.to_thread(build)
    except TemplateError as e:
        if getattr(e, "client_error", False):
            raise bad_request(str(e)) from None
        raise ApiError(500, f"the chat template failed: {e}") from None
    except ValueError as e:  # malformed messages, an invalid tool schema
        raise bad_request(str(e)) from None


async def prepare_chat(request: Request, chat: ChatRequest, *, n_predict: int | None, n_probs: int | None) -> ChatJob:
    """The plan, the prompt and the task; the tool-call grammar, when the plan has one, replaces
    the request's own constraint, and the format's stop strings join the request's."""
    plan = await plan_chat(request, chat)
    b = builder(request)
    prompt = plan.rendered.tokenize(b.tok)
    params = b.task(chat, prompt, n_predict=n_predict, n_probs=n_probs, chat=True, constraint=plan.constraint,
                    extra_stops=plan.stops)
    return ChatJob(plan, prompt, params)
