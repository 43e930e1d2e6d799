"""/tokenize, /detokenize and /apply-template."""

from __future__ import annotations

from litestar import Request, Response, post

from service.api.errors import bad_request
from service.api.openai import render_chat
from service.api.params import decode_json, get


@post("/tokenize", status_code=200)
async def tokenize(request: Request) -> Response:
    body = decode_json(await request.body())
    tok = request.app.state.server.model.tokenizer
    content = body.get("content")
    if not isinstance(content, str):
        raise bad_request('"content" must be a string')
    ids = tok.tokenize(content, add_special=bool(get(body, "add_special", bool, False)),
                       parse_special=bool(get(body, "parse_special", bool, True)))
    if not get(body, "with_pieces", bool, False):
        return Response({"tokens": ids})
    out = []
    for t in ids:
        raw = tok.token_to_piece(t)
        try:
            piece = raw.decode("utf-8")
        except UnicodeDecodeError:
            piece = list(raw)
        out.append({"id": t, "piece": piece})
    return Response({"tokens": out})


@post("/detokenize", status_code=200)
async def detokenize(request: Request) -> Response:
    body = decode_json(await request.body())
    st = request.app.state.server
    ids = body.get("tokens", [])
    n = st.model.cfg.n_vocab
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise bad_request('"tokens" must be an array of token ids')
    bad = [t for t in ids if not 0 <= t < n]
    if bad:
        raise bad_request(f"tokens: invalid token id {bad[0]} (the vocabulary has {n} tokens)")
    return Response({"content": st.model.tokenizer.detokenize(ids)})


@post("/apply-template", status_code=200)
async def apply_template(request: Request) -> Response:
    body = decode_json(await request.body())
    rendered = await render_chat(request, body)
    return Response({"prompt": rendered.prompt(request.app.state.server.model.tokenizer)})
