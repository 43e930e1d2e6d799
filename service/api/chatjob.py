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
import dataclasses
from dataclasses import dataclass

import msgspec
from litestar import Request

from service.api.errors import ApiError, bad_request
from service.api.media import take_images
from service.api.params import builder
from service.api.protocol_openai import ChatRequest, chat_input
from service.chat.plan import ChatPlan, build_plan
from service.chat.output import OutputSpec
from service.chat.reasoning import ReasoningFormat, reasoning_format
from service.chat.toolcall_formats import ToolFormat
from service.engine.task import TaskParams, ThinkingBudget


@dataclass
class ChatJob:
    plan: ChatPlan
    prompt: list[int]
    params: TaskParams


async def plan_chat(request: Request, chat: ChatRequest, *, compile_grammar: bool = True,
                    allow_empty: bool = False) -> ChatPlan:
    """The request's ChatPlan, built off the event loop; client mistakes are 400s."""
    from service.chat import TemplateError

    st = request.app.state.server
    b = builder(request)
    if not st.args.jinja and chat.tools:  # llama-server's refusal, word for word
        raise bad_request("tools param requires --jinja flag")
    inp = chat_input(chat, prefill_assistant=st.args.prefill_assistant, allow_empty=allow_empty)
    if st.args.reasoning in ("on", "off"):  # -rea: the template's enable_thinking unless the request sets it
        inp = dataclasses.replace(inp, template_kwargs={"enable_thinking": st.args.reasoning == "on",
                                                        **inp.template_kwargs})
    default = reasoning_format(st.args.reasoning_format, "--reasoning-format")  # checked at startup

    def build() -> ChatPlan:
        compiler = b.grammar_compiler() if compile_grammar and inp.tools is not None else None
        return build_plan(st.template, inp, tokenizer=b.tok, compiler=compiler, default_reasoning=default,
                          stream=chat.stream)

    try:
        plan = await asyncio.to_thread(build)
    except TemplateError as e:
        if getattr(e, "client_error", False):
            raise bad_request(str(e)) from None
        raise ApiError(500, f"the chat template failed: {e}") from None
    except ValueError as e:  # malformed messages, an invalid tool schema
        raise bad_request(str(e)) from None
    if st.args.skip_chat_parsing:  # --skip-chat-parsing: whatever the model writes is content
        plan.spec = OutputSpec(ToolFormat.CONTENT_ONLY, ReasoningFormat.NONE)
    return plan


async def prepare_chat(request: Request, chat: ChatRequest, *, n_predict: int | None, n_probs: int | None,
                       allow_empty: bool = False) -> ChatJob:
    """The plan, the prompt and the task; the tool-call grammar, when the plan has one, replaces
    the request's own constraint, and the format's stop strings join the request's."""
    chat, images = await chat_images(request, chat)
    plan = await plan_chat(request, chat, allow_empty=allow_empty)
    b = builder(request)
    prompt = await chat_prompt(request, plan, images)
    params = b.task(chat, prompt, n_predict=n_predict, n_probs=n_probs, chat=True, constraint=plan.constraint,
                    extra_stops=plan.stops)
    budget = thinking_budget(request.app.state.server.args, chat, plan, b.tok)
    if budget is not None:
        params = dataclasses.replace(params, thinking_budget=budget)
    return ChatJob(plan, prompt, params)


async def chat_images(request: Request, chat: ChatRequest) -> tuple[ChatRequest, list[bytes]]:
    """The request with each image part replaced by the media marker, and the images' bytes in order
    (read off the event loop where the server takes images: a URL is downloaded, a file read)."""
    st = request.app.state.server
    if st.media is None:  # every image part is refused, without reading anything
        messages, images = take_images(chat.messages, None)
    else:
        messages, images = await asyncio.to_thread(take_images, chat.messages, st.media, st.args.media_path)
    return (msgspec.structs.replace(chat, messages=messages) if images else chat), images


async def chat_prompt(request: Request, plan: ChatPlan, images: list[bytes]) -> list[int]:
    """The plan's prompt ids; with images, llama.cpp's mtmd layout: the whole prompt text split at the
    markers, the images encoded off the event loop."""
    b = builder(request)
    if images:
        return await asyncio.to_thread(b.media_prompt, plan.rendered.prompt(b.tok), images)
    return plan.rendered.tokenize(b.tok)


def thinking_budget(args, chat: ChatRequest, plan: ChatPlan, tok) -> ThinkingBudget | None:
    """The request's thinking budget (reasoning_budget_tokens, else --reasoning-budget; -1 none),
    where the template has a thinking block to close: as llama-server, the end forced when it is
    spent is the budget message then the closing tag."""
    n = next((v for v in (chat.reasoning_budget_tokens, chat.thinking_budget_tokens) if v is not None and v != -1),
             args.reasoning_budget)
    if n < 0 or not plan.thinks:
        return None
    tags = plan.spec.tags
    message = chat.reasoning_budget_message if chat.reasoning_budget_message is not None else (
        args.reasoning_budget_message or "")
    end = tuple(tok.tokenize(message + tags.close, add_special=False, parse_special=True))
    return ThinkingBudget(n, tags.open, tags.close, plan.spec.forced_open, end)
