"""/tokenize, /detokenize, /apply-template, and the input-token counts of chat and Responses
requests (/v1/chat/completions/input_tokens, /v1/responses/input_tokens, also without /v1)."""

from __future__ import annotations

from litestar import Request, Response, post

from service.api.chatjob import chat_images, chat_prompt, plan_chat
from service.api.errors import bad_request
from service.api.protocol import DetokenizeRequest, TokenizeRequest, decode
from service.api.protocol_openai import ChatRequest
from service.api.protocol_responses import ResponsesRequest


@post("/tokenize", status_code=200)
async def tokenize(request: Request) -> Response:
    req = decode(await request.body(), TokenizeRequest)
    tok = request.app.state.server.model.tokenizer
    ids = tok.tokenize(req.content, add_special=req.add_special, parse_special=req.parse_special)
    if not req.with_pieces:
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
    req = decode(await request.body(), DetokenizeRequest)
    st = request.app.state.server
    n = st.model.cfg.n_vocab
    bad = [t for t in req.tokens if not 0 <= t < n]
    if bad:
        raise bad_request(f"tokens: invalid token id {bad[0]} (the vocabulary has {n} tokens)")
    return Response({"content": st.model.tokenizer.detokenize(req.tokens)})


@post("/apply-template", status_code=200)
async def apply_template(request: Request) -> Response:
    """The prompt `messages` render to, tools and their rewrites included."""
    req, _ = await chat_images(request, decode(await request.body(), ChatRequest))  # images: the media marker
    plan = await plan_chat(request, req, compile_grammar=False)
    return Response({"prompt": plan.rendered.prompt(request.app.state.server.model.tokenizer)})


async def _input_tokens(request: Request, chat: ChatRequest) -> Response:
    chat, images = await chat_images(request, chat)
    plan = await plan_chat(request, chat, compile_grammar=False)
    n = len(await chat_prompt(request, plan, images))
    return Response({"input_tokens": n, "object": "response.input_tokens"})


@post(["/v1/chat/completions/input_tokens", "/chat/completions/input_tokens"], status_code=200)
async def chat_input_tokens(request: Request) -> Response:
    """How many tokens the request's prompt has: its messages and tools through the template."""
    return await _input_tokens(request, decode(await request.body(), ChatRequest))


@post(["/v1/responses/input_tokens", "/responses/input_tokens"], status_code=200)
async def responses_input_tokens(request: Request) -> Response:
    return await _input_tokens(request, decode(await request.body(), ResponsesRequest).to_chat())
