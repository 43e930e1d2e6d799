"""The ASGI application: Litestar routes behind the Gate middleware."""

from __future__ import annotations

from litestar import Litestar, Request, Response, post
from litestar.exceptions import HTTPException

from service import __version__
from service.api import (anthropic, completion, cors_proxy, gcp, info, lora, metrics, openai, responses, slot_actions,
                         sse, tokens, webui)
from service.api.runs import ClientGone
from service.api.errors import (ApiError, not_supported, on_api_error, on_client_gone, on_http_exception,
                                on_unexpected)
from service.api.gate import Gate
from service.api.state import ServerState


@post(["/embedding", "/embeddings", "/v1/embeddings"], status_code=200)
async def embeddings(request: Request) -> Response:
    from service.api.embeddings import handle

    st = request.app.state.server
    if not st.args.embeddings:
        raise not_supported("This server does not support embeddings. Start it with `--embeddings`")
    return await handle(request)


@post(["/rerank", "/reranking", "/v1/rerank", "/v1/reranking"], status_code=200)
async def rerank(request: Request) -> Response:
    st = request.app.state.server
    if not st.args.reranking:
        raise not_supported("This server does not support reranking. Start it with `--reranking`")
    from service.api.rerank import handle

    return await handle(request)


MAX_BODY = 100 * 1024 * 1024

ROUTES = [
    info.health, info.models, info.props, info.set_props, info.slots,
    completion.completion, completion.infill,
    openai.completions, openai.chat_completions,
    tokens.tokenize, tokens.detokenize, tokens.apply_template, tokens.chat_input_tokens, tokens.responses_input_tokens,
    metrics.metrics, embeddings, rerank, slot_actions.slot_action,
    anthropic.messages, anthropic.count_tokens, responses.responses, cors_proxy.cors_proxy,
    lora.list_adapters, lora.set_adapters,
    webui.static_file,  # GET / and any other GET path no route above takes: the Web UI's files
]


def create_app(state: ServerState):
    state.build_info = f"llamajit-{__version__}"
    sse.set_ping_interval(state.args.sse_ping_interval)
    app = Litestar(
        route_handlers=ROUTES + gcp.routes(),  # Vertex AI's /predict only under AIP_MODE=PREDICTION
        exception_handlers={ApiError: on_api_error, ClientGone: on_client_gone, HTTPException: on_http_exception,
                            Exception: on_unexpected},
        # llama-server's HTTP library (cpp-httplib) takes bodies up to 100 MiB and answers 413 past
        # that; uvicorn reads and drops the rest of a refused body, so the client reads the answer.
        request_max_body_size=MAX_BODY,
        openapi_config=None,
        logging_config=None,
    )
    app.state.server = state
    app.state.registry = metrics.make_registry(state)
    return Gate(app, state)
