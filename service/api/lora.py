"""GET and POST /lora-adapters: the loaded LoRA adapters and their server-wide scales.

GET lists each adapter as llama-server does (id, path, scale, task_name, prompt_prefix). POST
takes an array of {"id", "scale"} and sets the server-wide scales: listed adapters get their
scale, the others 0 (llama-server's rule). Tasks that start afterwards use them unless their
request names its own (`lora`); tasks already running keep theirs. A body that is not an array,
or an id that no adapter has, is a 400.
"""

from __future__ import annotations

import math

import msgspec
from litestar import Request, Response, get, post

from service.api.errors import bad_request
from service.api.protocol import LoraScale, decode


@get("/lora-adapters")
async def list_adapters(request: Request) -> Response:
    model = request.app.state.server.loaded_model
    return Response([{"id": i, "path": ad.path, "scale": ad.scale, "task_name": ad.task_name,
                      "prompt_prefix": ad.prompt_prefix} for i, ad in enumerate(model.adapters.items)])


@post("/lora-adapters", status_code=200)
async def set_adapters(request: Request) -> Response:
    body = await request.body()
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise bad_request(f"invalid JSON: {e}") from None
    if not isinstance(raw, list):
        raise bad_request("Request body must be an array")
    entries = decode(body, list[LoraScale])
    items = request.app.state.server.loaded_model.adapters.items
    scales = [0.0] * len(items)
    for e in entries:
        if not 0 <= e.id < len(items):
            raise bad_request(f"no adapter with id {e.id} (this server has {len(items)})")
        if not math.isfinite(e.scale):
            raise bad_request(f"the scale of adapter {e.id} must be a finite number")
        scales[e.id] = float(e.scale)
    for ad, sc in zip(items, scales):
        ad.scale = sc
    return Response({"success": True})
