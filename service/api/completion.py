"""llama-server's native generation routes: /completion (/completions) and /infill."""

from __future__ import annotations

from litestar import Request, Response, post

from service.api.errors import not_supported
from service.api.params import ParamBuilder, builder
from service.api.protocol import CompletionRequest, InfillChunk, InfillRequest, decode
from service.api.result_json import native_final, native_partial
from service.api.runs import Runs, log_fields
from service.api.sse import data, stream
from service.engine.task import Final


async def run_native(request: Request, req: CompletionRequest, prompts: list[list[int]]) -> Response:
    """Run one task per prompt; a list of results when several prompts were given."""
    st = request.app.state.server
    b = builder(request)
    params = [b.task(req, p) for p in prompts]
    runs = Runs(st.engine, params)
    model, n_ctx, tok = st.alias, st.model.n_ctx, st.model.tokenizer
    fields = req.response_fields
    if req.stream:
        counts = [0] * len(runs)

        def frame(i: int, ev) -> list[bytes]:
            p = params[i]
            if isinstance(ev, Final):
                log_fields(request, ev, lambda: tok.detokenize(p.prompt))
                return [data(select_fields(native_final(ev, p, tok, i, model, n_ctx, stream=True, return_tokens=False,
                                                        prompt_text=""), fields))]
            counts[i] += len(ev.tokens)
            return [data(native_partial(ev, p, tok, i, ev.id_slot, len(p.prompt), counts[i]))]

        return stream(runs, frame)
    out = []
    for i, ev in enumerate(await runs.results(request)):
        text = tok.detokenize(params[i].prompt)
        log_fields(request, ev, lambda: text)
        out.append(select_fields(native_final(ev, params[i], tok, i, model, n_ctx, stream=False,
                                              return_tokens=req.return_tokens, prompt_text=text), fields))
    return Response(out if len(prompts) > 1 else out[0])


def select_fields(result: dict, fields: list[str] | None) -> dict:
    """llama-server's response_fields: keep only these; "a/b" is result["a"]["b"], under the key
    "a/b"; a path that does not exist is left out."""
    if not fields:
        return result
    out = {}
    for f in fields:
        node = result
        for key in f.split("/"):
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            out[f] = node
    return out


@post(["/completion", "/completions"], status_code=200)
async def completion(request: Request) -> Response:
    req = decode(await request.body(), CompletionRequest)
    return await run_native(request, req, await builder(request).prompts_off_loop(req.prompt))


@post("/infill", status_code=200)
async def infill(request: Request) -> Response:
    req = decode(await request.body(), InfillRequest)
    b = builder(request)
    tok = b.tok
    missing = [f"{name} token is missing. " for name, t in (("prefix", tok.fim_pre_id), ("suffix", tok.fim_suf_id),
                                                             ("middle", tok.fim_mid_id)) if t is None]
    if missing:
        raise not_supported("Infill is not supported by this model: " + "".join(missing))
    tokens = infill_prompt(b, req.input_prefix, req.input_suffix, req.input_extra, req.prompt,
                           request.app.state.server.args.batch_size)
    return await run_native(request, req, [tokens])


def infill_prompt(b: ParamBuilder, prefix: str, suffix: str, extra: list[InfillChunk], prompt, n_batch: int) -> list[int]:
    """llama-server's FIM layout: [repo context] PRE prefix SUF suffix MID prompt, trimmed to fit.

    With FIM_REP/FIM_SEP tokens the extra chunks go in repo-level form; without them they
    are plain text before FIM_PRE. The prefix keeps its end and the suffix its start when
    the whole does not fit in the batch (3/4 of it for the prefix side)."""
    tok = b.tok
    enc = lambda s: tok.tokenize(s, add_special=False, parse_special=False)  # noqa: E731
    ctx: list[int] = []
    if tok.fim_rep_id is not None and tok.fim_sep_id is not None:
        if extra:
            ctx = [tok.fim_rep_id] + enc("myproject\n")
            for c in extra:
                ctx += [tok.fim_sep_id] + enc(c.filename + "\n") + enc(c.text)
            ctx += [tok.fim_sep_id] + enc("filename\n")
    else:
        for c in extra:
            ctx += enc(c.text)
    pre, suf = enc(prefix), enc(suffix)
    mid = b.prompt_tokens(prompt, "prompt") if prompt not in ("", None, []) else []
    if mid and tok.bos_id is not None and mid[0] == tok.bos_id:
        mid = mid[1:]
    room = max(0, n_batch - len(mid) - 4)
    n_suf = min(len(suf), room // 4)
    n_pre = min(len(pre), room - n_suf)
    pre, suf = pre[len(pre) - n_pre:], suf[:n_suf]
    n_ctx_room = max(0, n_batch - (len(pre) + len(suf) + len(mid) + 4))
    ctx = ctx[len(ctx) - n_ctx_room:] if n_ctx_room < len(ctx) else ctx
    head = [tok.bos_id] if tok.add_bos and tok.bos_id is not None else []
    return head + ctx + [tok.fim_pre_id] + pre + [tok.fim_suf_id] + suf + [tok.fim_mid_id] + mid
