"""llama-server's native generation routes: /completion (/completions) and /infill."""

from __future__ import annotations

from litestar import Request, Response, post

from service.api.bridge import TaskRun, log_fields, results
from service.api.errors import bad_request, not_supported
from service.api.params import ParamBuilder, decode_json, get
from service.api.results import native_final, native_partial
from service.api.sse import stream_runs
from service.engine.task import Final, Partial


def builder(request: Request) -> ParamBuilder:
    st = request.app.state.server
    b = request.app.state.get("params")
    if b is None:
        b = request.app.state.params = ParamBuilder(st)
    return b


async def run_native(request: Request, body: dict, prompts: list[list[int]]) -> Response:
    """Run one task per prompt; a list of results when several prompts were given."""
    st = request.app.state.server
    b = builder(request)
    stream = bool(get(body, "stream", bool, False))
    return_tokens = bool(get(body, "return_tokens", bool, False))
    fields = get(body, "response_fields", list)
    if fields is not None and not all(isinstance(f, str) for f in fields):
        raise bad_request("response_fields: expected an array of strings")
    params = [b.task(body, p, stream=stream) for p in prompts]
    runs = [TaskRun(st.engine, p) for p in params]
    model, n_ctx, tok = st.alias, st.model.n_ctx, st.model.tokenizer
    if stream:
        counts = [0] * len(runs)

        def on_partial(i: int, ev: Partial) -> list:
            counts[i] += len(ev.tokens)
            return [native_partial(ev, params[i], tok, i, ev.id_slot, len(params[i].prompt), counts[i])]

        def on_final(i: int, ev: Final) -> list:
            log_fields(request, ev, lambda: tok.detokenize(params[i].prompt))
            return [select_fields(native_final(ev, params[i], tok, i, model, n_ctx, stream=True, return_tokens=False,
                                               prompt_text=""), fields)]

        return stream_runs(runs, on_partial, on_final)
    out = []
    for i, ev in enumerate(await results(request, runs)):
        log_fields(request, ev, lambda: tok.detokenize(params[i].prompt))
        out.append(select_fields(native_final(ev, params[i], tok, i, model, n_ctx, stream=False,
                                              return_tokens=return_tokens,
                                              prompt_text=tok.detokenize(params[i].prompt)), fields))
    return Response(out if len(prompts) > 1 else out[0])


def select_fields(result: dict, fields: list[str] | None) -> dict:
    """llama-server's response_fields: keep only these; "a/b" lifts result["a"]["b"] to "b"."""
    if not fields:
        return result
    out = {}
    for f in fields:
        node, path = result, f.split("/")
        for key in path:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            out[path[-1]] = node
    return out


@post(["/completion", "/completions"], status_code=200)
async def completion(request: Request) -> Response:
    body = decode_json(await request.body())
    return await run_native(request, body, builder(request).prompts(body.get("prompt")))


@post("/infill", status_code=200)
async def infill(request: Request) -> Response:
    body = decode_json(await request.body())
    b = builder(request)
    tok = b.tok
    missing = [f"{name} token is missing. " for name, t in (("prefix", tok.fim_pre_id), ("suffix", tok.fim_suf_id),
                                                             ("middle", tok.fim_mid_id)) if t is None]
    if missing:
        raise not_supported("Infill is not supported by this model: " + "".join(missing))
    prefix = get(body, "input_prefix", str, "")
    suffix = get(body, "input_suffix", str, "")
    extra = body.get("input_extra", [])
    if not isinstance(extra, list) or not all(
        isinstance(c, dict) and isinstance(c.get("text", ""), str) and isinstance(c.get("filename", ""), str)
        for c in extra
    ):
        raise bad_request('input_extra: expected an array of {"filename": string, "text": string} objects')
    prompt = body.get("prompt", "")
    tokens = infill_prompt(b, prefix, suffix, extra, prompt, request.app.state.server.args.batch_size)
    return await run_native(request, body, [tokens])


def infill_prompt(b: ParamBuilder, prefix: str, suffix: str, extra: list[dict], prompt, n_batch: int) -> list[int]:
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
                ctx += [tok.fim_sep_id] + enc(c.get("filename", "") + "\n") + enc(c.get("text", ""))
            ctx += [tok.fim_sep_id] + enc("filename\n")
    else:
        for c in extra:
            ctx += enc(c.get("text", ""))
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
