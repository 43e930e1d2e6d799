"""llama-server's error bodies: {"error": {"code", "message", "type"}} with its type names.

Handlers raise ApiError; the exception handlers below turn it, Litestar's own HTTP errors
(unknown route or method: 404, oversized body, bad query parameters) and anything unexpected
into that shape.
A client's mistake is always a 4xx; only a server bug becomes a 500.
"""

from __future__ import annotations

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service.api.apierror import TYPES, ApiError  # noqa: F401 (re-exported: handlers raise ApiError)
from service.engine.task import ErrorKind, Failure

log = structlog.get_logger("llamajit.http")

# The engine's kinds of failure as (status, type).
_FAILURES = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error"),
    ErrorKind.EXCEED_CONTEXT: (400, "exceed_context_size_error"),
    ErrorKind.INTERNAL: (500, "server_error"),
    ErrorKind.UNAVAILABLE: (503, "unavailable_error"),
}


def from_failure(f: Failure) -> ApiError:
    code, type_ = _FAILURES[f.kind]
    return ApiError(code, f.message, type_)


def bad_request(message: str, **extra) -> ApiError:
    return ApiError(400, message, **extra)


def not_supported(message: str) -> ApiError:
    return ApiError(501, message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, message)


def error_response(e: ApiError, headers: dict | None = None) -> Response:
    return Response(e.body(), status_code=e.code, headers=headers)


def on_api_error(_: Request, e: ApiError) -> Response:
    return error_response(e, e.headers)


def on_http_exception(_: Request, e: HTTPException) -> Response:
    code = e.status_code
    # A known path asked with another method is 404 too: llama-server's HTTP library routes on
    # (method, path) and answers anything unmatched with its "File Not Found" body.
    if code in (404, 405):
        return error_response(ApiError(404, "File Not Found"))
    if code == 413:
        return error_response(ApiError(413, "Request body too large", "invalid_request_error"))
    if code < 500:
        return error_response(ApiError(code, str(e.detail), "invalid_request_error"))
    return error_response(ApiError(code, str(e.detail)))


def on_client_gone(_: Request, __: Exception) -> Response:
    return Response(b"", status_code=499)


def on_unexpected(request: Request, e: Exception) -> Response:
    log.exception("unhandled error", route=request.url.path)
    return error_response(ApiError(500, f"internal error: {type(e).__name__}"))
