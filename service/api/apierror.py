"""ApiError: a failure in llama-server's error shape, {"error": {"code", "message", "type"}}.

Apart from service.api.errors (which maps the engine's failures and Litestar's exceptions onto
it) so that the router (service.router), which forwards bytes, can answer errors without
importing the engine, the sampler or Numba.
"""

from __future__ import annotations

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


class ApiError(Exception):
    def __init__(self, code: int, message: str, type_: str | None = None, *, headers: dict | None = None,
                 **extra):
        super().__init__(message)
        self.code, self.message = code, message
        self.headers = headers  # sent with the answer (Retry-After on a full queue)
        self.type = type_ or TYPES.get(code, "invalid_request_error" if code < 500 else "server_error")
        self.extra = extra

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "type": self.type, **self.extra}}
