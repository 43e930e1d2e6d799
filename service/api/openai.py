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

from service.api.chatjob import prepare_chat
from service.api.errors import bad_request
from service.api.params import builder, copies
from service.api.protocol import decode
from service.api.protocol_openai import ChatRequest, CompletionsRequest
from service.api.result_json import (delta_json, finish_reason, message_json, native_final, oai_logprobs,
                                     step_extras, timings_json, usage)
from service.api.runs import Runs, log_fields
from service.api.sse import DONE, data, stream
from service.chat.output import OutputStream, final_message
from service.engine.task import Final


def _head(st, kind: str) -> dict:
    cid = ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)
    return {"id": cid, "created": int(time.time()), "model": st.alias, "system_fingerprint": st.build_info}


async def _finals(request: Request, runs: Runs, prompt: list[int]) -> list[Final]:
    finals = await runs.results(request)
    tok = request.app.state.server.model.tokenizer
    for f in finals:
        log_fields(request, f, lambda: tok.detokenize(prompt))
    return finals


def _tail(finals: list[Final], chunk: dict, include_usage: bool):
    """After the last choice: a usage chunk when asked for (it carries the timings then, as
    llama-server puts them on its last chunk), then [DONE]."""
    def tail() -> list[bytes]:
        if not include_usage:
            return [DONE]
        return [data({**chunk, "choices": [], "usage": usage(finals), "timings": timings_json(finals[-1].timings)}),
                DONE]
    return tail


@post("/v1/completions", status_code=200)
async def completions(request: Request) -> Response:
    """Text choices for one prompt."""
    req = decode(await request.body(), CompletionsRequest)
    st = request.app.state.server
    tok = st.model.tokenizer
    b = builder(request)
    prompts = await b.prompts_off_loop(req.prompt)
    if len(prompts) != 1:
        raise bad_request("prompt: only one prompt per request is supported on /v1/completions")
    prompt, n = prompts[0], req.n_choices()
    k, n_probs = req.logprob_counts()
    runs = Runs(st.engine, copies(b.task(req, prompt, n_predict=req.limit(), n_probs=n_probs), n))
    head = {**_head(st, "text"), "object": "text_completion"}

    def choice(i: int, text: str, tokens, final: Final | None) -> dict:
        lp = oai_logprobs(tok, tokens, k) if n_probs and tokens else None
        return {"index": i, "text": text, "logprobs": lp, "finish_reason": finish_reason(final) if final else None}

    if req.stream:
        finals: list[Final] = []

        def frame(i: int, ev) -> list[bytes]:
            if not isinstance(ev, Final):
                extras = step_extras(ev)
                if not ev.content and not (n_probs and ev.tokens) and not extras:
                    return []
                return [data({**head, "choices": [choice(i, ev.content, ev.tokens, None)], **extras})]
            finals.append(ev)
            log_fields(request, ev, lambda: tok.detokenize(prompt))
            out = {**head, "choices": [choice(i, ev.unsent, (), ev)]}
            if len(finals) == n and not req.include_usage:
                out["timings"] = timings_json(ev.timings)
            return [data(out)]

        return stream(runs, frame, tail=_tail(finals, head, req.include_usage))

    finals = await _finals(request, runs, prompt)
    return Response({**head, "choices": [choice(i, f.content, f.tokens, f) for i, f in enumerate(finals)],
                     "usage": usage(finals), "timings": timings_json(finals[-1].timings),
                     **_verbose(request, req, finals[0], runs.tasks[0].params)})


@post(["/v1/chat/completions", "/chat/completions"], status_code=200)
async def chat_completions(request: Request) -> Response:
    """Messages in, an assistant message (content, reasoning, tool calls) out."""
    req = decode(await request.body(), ChatRequest)
    st = request.app.state.server
    tok = st.model.tokenizer
    n = req.n_choices()
    k, n_probs = req.logprob_counts()
    job = await prepare_chat(request, req, n_predict=req.limit(), n_probs=n_probs)
    spec, prompt = job.plan.spec, job.prompt
    runs = Runs(st.engine, copies(job.params, n))
    head = _head(st, "chat")

    def logprobs(tokens) -> dict | None:
        return oai_logprobs(tok, tokens, k) if n_probs and tokens else None

    if req.stream:
        finals: list[Final] = []
        outs = [OutputStream(spec) for _ in range(n)]
        chunk = {**head, "object": "chat.completion.chunk"}

        def delta_chunks(i: int, deltas, tokens) -> list[dict]:
            out = [{**chunk, "choices": [{"index": i, "delta": delta_json(d), "finish_reason": None,
                                          "logprobs": None}]} for d in deltas]
            lp = logprobs(tokens)
            if lp is not None:
                if not out:  # a step that adds no text still reports its token's probabilities
                    out.append({**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": None}]})
                out[-1]["choices"][0]["logprobs"] = lp
            return out

        def frame(i: int, ev) -> list[bytes]:
            if not isinstance(ev, Final):
                out = delta_chunks(i, outs[i].feed(ev.content), ev.tokens)
                if ev.progress is not None:  # a prompt-progress step opens with the role, as llama-server
                    out.insert(0, {**chunk, "choices": [{"index": i, "delta": {"role": "assistant", "content": None},
                                                         "finish_reason": None}]})
                extras = step_extras(ev)
                if extras and not out:
                    out.append({**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": None}]})
                if extras:
                    out[-1] = {**out[-1], **extras}
                return [data(c) for c in out]
            finals.append(ev)
            log_fields(request, ev, lambda: tok.detokenize(prompt))
            msg, deltas = outs[i].finish(ev.content)
            last = {**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": finish_reason(ev, bool(msg.tool_calls)),
                                          "logprobs": None}]}
            if len(finals) == n and not req.include_usage:
                last["timings"] = timings_json(ev.timings)
            return [data(c) for c in [*delta_chunks(i, deltas, ()), last]]

        first = {**chunk, "choices": [{"index": i, "delta": {"role": "assistant", "content": None},
                                       "finish_reason": None, "logprobs": None} for i in range(n)]}
        return stream(runs, frame, head=[data(first)], tail=_tail(finals, chunk, req.include_usage))

    finals = await _finals(request, runs, prompt)
    choices = []
    for i, f in enumerate(finals):
        msg = final_message(spec, f.content)
        choices.append({"index": i, "message": message_json(msg), "finish_reason": finish_reason(f, bool(msg.tool_calls)),
                        "logprobs": logprobs(f.tokens)})
    return Response({**head, "object": "chat.completion", "choices": choices, "usage": usage(finals),
                     "timings": timings_json(finals[-1].timings), **_verbose(request, req, finals[0], job.params)})


def _verbose(request: Request, req, final: Final, params) -> dict:
    """-v, or the request's "verbose": llama-server's native result under "__verbose", the prompt
    text (special tokens written out) included, for debugging what the template made."""
    st = request.app.state.server
    if not (req.verbose or st.args.verbose):
        return {}
    tok = st.model.tokenizer
    text = tok.detokenize(list(params.prompt))
    return {"__verbose": native_final(final, params, tok, 0, st.alias, st.model.n_ctx, stream=False,
                                      return_tokens=False, prompt_text=text)}
