"""OpenAI-compatible routes: /v1/completions and /v1/chat/completions (also /chat/completions).

Same engine tasks as the native routes; only the request fields (max_tokens, n, logprobs,
messages) and the response shapes (choices, usage, chunks ending in [DONE]) differ.

Chat answers are parsed as llama-server parses them (service.chat.plan / output): a leading
thinking block becomes `reasoning_content`, tool calls in the template's syntax become
`tool_calls` (finish_reason "tool_calls"), the rest is `content`. A stream re-parses after every
step and sends only what was added: reasoning and content deltas, then per tool call one delta
with its index, id, type and name and further deltas with pieces of its arguments.
"""

from __future__ import annotations

import secrets
import time

from litestar import Request, Response, post

from service.api.bridge import TaskRun, log_fields, results
from service.api.chatjob import finish_kind, plan_chat, prepare_chat, start_runs
from service.api.completion import builder
from service.api.errors import bad_request
from service.api.params import decode_json, get
from service.api.results import token_entry
from service.api.sse import stream_runs
from service.chat.output import OutputStream, final_message
from service.engine.task import Final, Partial, StopType, TokenInfo


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


def _sampling_fields(body: dict, kind: str) -> tuple[int, int]:
    """(top-k logprobs to report, n_probs for the task)."""
    if kind == "chat":
        want_lp = bool(get(body, "logprobs", bool, False))
        top = get(body, "top_logprobs", int)
        if top is not None and not want_lp:
            raise bad_request("top_logprobs: requires logprobs to be set to true")
        top = top or 0
        if want_lp and not 0 <= top <= 20:
            raise bad_request(f"top_logprobs: must be in [0, 20], got {top}")
        return (top if want_lp else 0), (max(1, top) if want_lp else 0)
    lp = get(body, "logprobs", int)
    return lp or 0, lp or 0


def _head(st, kind: str) -> dict:
    cid = ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)
    return {"id": cid, "created": int(time.time()), "model": st.alias, "system_fingerprint": st.build_info}


async def _finals(request: Request, runs: list[TaskRun], prompt: list[int]) -> list[Final] | Response:
    finals = await results(request, runs)
    tok = request.app.state.server.model.tokenizer
    for f in finals:
        log_fields(request, f, lambda: tok.detokenize(prompt))
    return list(finals)


async def _run_text(request: Request, body: dict, prompt: list[int]) -> Response:
    """/v1/completions: text choices."""
    st = request.app.state.server
    tok = st.model.tokenizer
    n, n_predict, _ = _common(body)
    stream = bool(get(body, "stream", bool, False))
    k, n_probs = _sampling_fields(body, "text")
    params = builder(request).task(body, prompt, n_predict=n_predict, stream=stream, n_probs=n_probs)
    runs = start_runs(st, params, n)
    head = _head(st, "text")

    def choice(i: int, text: str, tokens, final: Final | None) -> dict:
        lp = oai_logprobs(tok, tokens, k) if n_probs and tokens else None
        return {"index": i, "text": text, "logprobs": lp,
                "finish_reason": finish_reason(final) if final is not None else None}

    if stream:
        include_usage = bool((get(body, "stream_options", dict, {}) or {}).get("include_usage", False))
        finals: list[Final] = []

        def on_partial(i: int, ev: Partial) -> list:
            if not ev.content and not (n_probs and ev.tokens):
                return []
            return [{**head, "object": "text_completion", "choices": [choice(i, ev.content, ev.tokens, None)]}]

        def on_final(i: int, ev: Final) -> list:
            finals.append(ev)
            log_fields(request, ev, lambda: tok.detokenize(prompt))
            out = {**head, "object": "text_completion", "choices": [choice(i, ev.unsent, (), ev)]}
            if len(finals) == n:
                out["timings"] = ev.timings.as_dict()
            return [out]

        def tail() -> list:
            return [{**head, "object": "text_completion", "choices": [], "usage": usage(finals)}] if include_usage else []

        return stream_runs(runs, on_partial, on_final, tail=tail, done=True)

    finals = await _finals(request, runs, prompt)
    if isinstance(finals, Response):
        return finals
    return Response({**head, "object": "text_completion",
                     "choices": [choice(i, f.content, f.tokens, f) for i, f in enumerate(finals)],
                     "usage": usage(finals), "timings": finals[-1].timings.as_dict()})


async def _run_chat(request: Request, body: dict) -> Response:
    """/v1/chat/completions: messages in, an assistant message (content, reasoning, tool calls) out."""
    st = request.app.state.server
    tok = st.model.tokenizer
    n, n_predict, _ = _common(body)
    stream = bool(get(body, "stream", bool, False))
    k, n_probs = _sampling_fields(body, "chat")
    job = await prepare_chat(request, body, stream=stream, n_predict=n_predict, n_probs=n_probs)
    spec, prompt = job.plan.spec, job.prompt
    runs = start_runs(st, job.params, n)
    head = _head(st, "chat")

    def logprobs(tokens) -> dict | None:
        return oai_logprobs(tok, tokens, k) if n_probs and tokens else None

    if stream:
        include_usage = bool((get(body, "stream_options", dict, {}) or {}).get("include_usage", False))
        finals: list[Final] = []
        outs = [OutputStream(spec) for _ in range(n)]
        chunk = {**head, "object": "chat.completion.chunk"}

        def delta_chunks(i: int, deltas, tokens) -> list:
            out = [{**chunk, "choices": [{"index": i, "delta": d.to_openai(), "finish_reason": None,
                                          "logprobs": None}]} for d in deltas]
            lp = logprobs(tokens)
            if lp is not None:
                if not out:  # a step that adds no text still reports its token's probabilities
                    out.append({**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": None}]})
                out[-1]["choices"][0]["logprobs"] = lp
            return out

        def on_partial(i: int, ev: Partial) -> list:
            return delta_chunks(i, outs[i].feed(ev.content), ev.tokens)

        def on_final(i: int, ev: Final) -> list:
            finals.append(ev)
            log_fields(request, ev, lambda: tok.detokenize(prompt))
            msg, deltas = outs[i].finish(ev.content)
            out = delta_chunks(i, deltas, ())
            last = {**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": finish_kind(ev, bool(msg.tool_calls)),
                                          "logprobs": None}]}
            if len(finals) == n:
                last["timings"] = ev.timings.as_dict()
            return [*out, last]

        def tail() -> list:
            return [{**chunk, "choices": [], "usage": usage(finals)}] if include_usage else []

        first = [{**chunk, "choices": [{"index": i, "delta": {"role": "assistant", "content": None},
                                        "finish_reason": None, "logprobs": None} for i in range(n)]}]
        return stream_runs(runs, on_partial, on_final, head=first, tail=tail, done=True)

    finals = await _finals(request, runs, prompt)
    if isinstance(finals, Response):
        return finals
    choices = []
    for i, f in enumerate(finals):
        msg = final_message(spec, f.content)
        choices.append({"index": i, "message": msg.to_openai(), "finish_reason": finish_kind(f, bool(msg.tool_calls)),
                        "logprobs": logprobs(f.tokens)})
    return Response({**head, "object": "chat.completion", "choices": choices, "usage": usage(finals),
                     "timings": finals[-1].timings.as_dict()})


@post("/v1/completions", status_code=200)
async def completions(request: Request) -> Response:
    body = decode_json(await request.body())
    prompts = builder(request).prompts(body.get("prompt"))
    if len(prompts) != 1:
        raise bad_request("prompt: only one prompt per request is supported on /v1/completions")
    return await _run_text(request, body, prompts[0])


@post(["/v1/chat/completions", "/chat/completions"], status_code=200)
async def chat_completions(request: Request) -> Response:
    body = decode_json(await request.body())
    return await _run_chat(request, body)


async def render_chat(request: Request, body: dict):
    """The prompt body["messages"] renders to, tools and their rewrites included (/apply-template)."""
    return (await plan_chat(request, body, stream=False, compile_grammar=False)).rendered


async def chat_prompt(request: Request, body: dict) -> list[int]:
    rendered = await render_chat(request, body)
    return rendered.tokenize(request.app.state.server.model.tokenizer)
