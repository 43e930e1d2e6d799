"""OpenAI-compatible routes: /v1/completions and /v1/chat/completions (also /chat/completions).

Same engine tasks as the native routes; only the request fields (max_tokens, n, logprobs,
messages) and the response shapes (choices, usage, chunks ending in [DONE]) differ.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from litestar import Request, Response, post

from service.api.bridge import TaskRun, gather_finals, log_fields
from service.api.completion import builder
from service.api.errors import ApiError, bad_request
from service.api.params import decode_json, get
from service.api.results import token_entry
from service.api.sse import stream_runs
from service.engine.task import Failure, Final, Partial, StopType, TokenInfo


def finish_reason(ev: Final) -> str:
    return "length" if ev.stop_type is StopType.LIMIT else "stop"


def oai_logprobs(tok, tokens: tuple[TokenInfo, ...], k: int) -> dict:
    content = []
    for t in tokens:
        if t.probs is None:
            continue
        e = token_entry(tok, t.id, t.probs.prob, False)
        e["top_logprobs"] = [token_entry(tok, i, float(p), False) for i, p in
                             list(zip(t.probs.top_ids, t.probs.top_probs))[:k]]
        content.append(e)
    return {"content": content}


def usage(finals: list[Final]) -> dict:
    prompt = finals[0].n_prompt if finals else 0
    done = sum(f.n_predicted for f in finals)
    return {"completion_tokens": done, "prompt_tokens": prompt, "total_tokens": prompt + done,
            "prompt_tokens_details": {"cached_tokens": finals[0].n_cached if finals else 0}}


def _common(body: dict) -> tuple[int, int | None, int]:
    """(n choices, n_predict or None, top-k logprobs wanted; 0 = none)."""
    n = get(body, "n", int, 1)
    if not 1 <= n <= 16:
        raise bad_request(f"n: must be in [1, 16], got {n}")
    n_predict = None
    for name in ("max_completion_tokens", "max_tokens", "n_predict"):
        v = get(body, name, int)
        if v is not None:
            if v < -1:
                raise bad_request(f"{name}: must be >= -1, got {v}")
            n_predict = v
            break
    return n, n_predict, 0


async def _run(request: Request, body: dict, prompt: list[int], kind: str) -> Response:
    st = request.app.state.server
    b = builder(request)
    tok = st.model.tokenizer
    n, n_predict, _ = _common(body)
    stream = bool(get(body, "stream", bool, False))
    if kind == "chat":
        want_lp = bool(get(body, "logprobs", bool, False))
        top = get(body, "top_logprobs", int, 0)
        if want_lp and not 0 <= top <= 20:
            raise bad_request(f"top_logprobs: must be in [0, 20], got {top}")
        k = top if want_lp else 0
        n_probs = max(1, top) if want_lp else 0
    else:
        lp = get(body, "logprobs", int)
        k = lp or 0
        n_probs = lp or 0
    params = b.task(body, prompt, n_predict=n_predict, stream=stream, n_probs=n_probs)
    runs = [TaskRun(st.engine, params) for _ in range(n)]
    cid = ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)
    created = int(time.time())
    obj = "chat.completion" if kind == "chat" else "text_completion"
    head_fields = {"id": cid, "created": created, "model": st.alias, "system_fingerprint": st.build_info}

    def choice(i: int, text: str, tokens, final: Final | None, delta: bool) -> dict:
        lp = oai_logprobs(tok, tokens, k) if n_probs and tokens else None
        reason = finish_reason(final) if final is not None else None
        if kind == "chat":
            body_ = {"delta": {"content": text} if text else {}} if delta else {
                "message": {"role": "assistant", "content": text}}
            return {"index": i, **body_, "finish_reason": reason, "logprobs": lp}
        return {"index": i, "text": text, "logprobs": lp, "finish_reason": reason}

    if stream:
        include_usage = bool((get(body, "stream_options", dict, {}) or {}).get("include_usage", False))
        finals: list[Final] = []
        chunk_obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        head = [{**head_fields, "object": chunk_obj,
                 "choices": [{"index": i, "delta": {"role": "assistant", "content": None}, "finish_reason": None,
                              "logprobs": None} for i in range(n)]}] if kind == "chat" else []

        def on_partial(i: int, ev: Partial) -> list:
            if not ev.content and not (n_probs and ev.tokens):
                return []
            return [{**head_fields, "object": chunk_obj, "choices": [choice(i, ev.content, ev.tokens, None, True)]}]

        def on_final(i: int, ev: Final) -> list:
            finals.append(ev)
            log_fields(request, ev, lambda: tok.detokenize(prompt))
            c = choice(i, ev.unsent, (), ev, True)
            out = {**head_fields, "object": chunk_obj, "choices": [c]}
            if len(finals) == n:
                out["timings"] = ev.timings.as_dict()
            return [out]

        def tail() -> list:
            if not include_usage:
                return []
            return [{**head_fields, "object": chunk_obj, "choices": [], "usage": usage(finals)}]

        return stream_runs(runs, on_partial, on_final, head=head, tail=tail, done=True)

    results = await gather_finals(request, runs)
    if results is None:
        return Response(b"", status_code=499)
    for ev in results:
        if isinstance(ev, Failure):
            raise ApiError(ev.code, ev.message, ev.type)
    finals = list(results)
    for f in finals:
        log_fields(request, f, lambda: tok.detokenize(prompt))
    return Response({**head_fields, "object": obj,
                     "choices": [choice(i, f.content, f.tokens, f, False) for i, f in enumerate(finals)],
                     "usage": usage(finals), "timings": finals[-1].timings.as_dict()})


@post("/v1/completions", status_code=200)
async def completions(request: Request) -> Response:
    body = decode_json(await request.body())
    prompts = builder(request).prompts(body.get("prompt"))
    if len(prompts) != 1:
        raise bad_request("prompt: only one prompt per request is supported on /v1/completions")
    return await _run(request, body, prompts[0], "text")


@post(["/v1/chat/completions", "/chat/completions"], status_code=200)
async def chat_completions(request: Request) -> Response:
    body = decode_json(await request.body())
    prompt = await chat_prompt(request, body)
    return await _run(request, body, prompt, "chat")


async def render_chat(request: Request, body: dict):
    """The chat template applied to body["messages"] (rendered off the event loop: a template
    may take up to its time limit)."""
    from service.chat import TemplateError

    st = request.app.state.server
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: expected a non-empty array of message objects")
    kwargs = get(body, "chat_template_kwargs", dict, {}) or {}
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad_request("tools: expected an array")
    agp = bool(get(body, "add_generation_prompt", bool, True))
    try:
        return await asyncio.to_thread(st.template.render, messages, add_generation_prompt=agp, tools=tools,
                                       kwargs=kwargs)
    except TemplateError as e:
        if getattr(e, "client_error", False):
            raise bad_request(str(e)) from None
        raise ApiError(500, f"the chat template failed: {e}") from None
    except ValueError as e:  # the messages are malformed
        raise bad_request(str(e)) from None


async def chat_prompt(request: Request, body: dict) -> list[int]:
    rendered = await render_chat(request, body)
    return rendered.tokenize(request.app.state.server.model.tokenizer)
