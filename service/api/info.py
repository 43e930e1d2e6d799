"""Read-mostly routes: /health, /models, /props, /slots.

/health, /models and GET /props answer a sleeping server without waking it (they read
`loaded_model`, whose tokenizer and config stay loaded); /slots and POST /props wake it, as in
llama-server.
"""

from __future__ import annotations

import asyncio

from litestar import Request, Response, get, post

from service.api.errors import not_supported, unavailable
from service.api.protocol import AnyObject, decode
from service.api.result_json import generation_settings
from service.api.state import Status
from service.vision.media import media_marker


@get(["/health", "/v1/health"])
async def health(request: Request) -> Response:
    st = request.app.state.server
    if st.status is Status.READY:
        return Response({"status": "ok"})
    msg = "Loading model" if st.status is Status.LOADING else (
        "Server is shutting down" if st.status is Status.DRAINING else "Model failed to load")
    raise unavailable(msg)


@get(["/v1/models", "/models"])
async def models(request: Request) -> Response:
    st = request.app.state.server
    meta = None
    if st.loaded_model is not None:
        m = st.loaded_model
        f = m.facts()
        meta = {"vocab_type": f["vocab_type"], "n_vocab": f["n_vocab"], "n_ctx": m.n_ctx, "n_ctx_train": f["n_ctx_train"],
                "n_embd": f["n_embd"], "n_params": f["n_params"], "size": f["size"], "ftype": f.get("ftype")}
    entry = {"id": st.alias, "aliases": sorted(st.args.alias), "tags": sorted(st.args.tags), "object": "model",
             "created": int(st.started), "owned_by": "llamacpp",
             "architecture": {"input_modalities": ["text", "image"] if st.media is not None else ["text"],
                              "output_modalities": ["text"]}, "meta": meta}
    # the Ollama-style listing llama-server adds beside OpenAI's, with its placeholder fields
    ollama = {"name": st.alias, "model": st.alias, "modified_at": "", "size": "", "digest": "", "type": "model",
              "description": "", "tags": [""], "parameters": "",
              "capabilities": ["completion", "multimodal"] if st.media is not None else ["completion"],
              "details": {"parent_model": "", "format": "gguf", "family": "", "families": [""], "parameter_size": "",
                          "quantization_level": ""}}
    return Response({"object": "list", "data": [entry], "models": [ollama]})


def _default_settings(st) -> dict:
    m = st.loaded_model
    s = st.args.sampling_defaults(n_vocab=m.cfg.n_vocab, n_ctx=m.n_ctx)  # as requests start from
    spec = st.engine.config.spec
    return {"id": 0, "id_task": -1, "n_ctx": m.n_ctx, "speculative": spec.on, "is_processing": False,
            "params": generation_settings(None, s, m.n_ctx, st.alias, spec_types=spec.name), "prompt": "",
            "next_token": {"has_next_token": True, "has_new_line": False, "n_remain": -1, "n_decoded": 0,
                           "stopping_word": ""}}


async def _caps(st) -> dict:
    """What the chat template can print, in llama-server's chat_template_caps names (probed once,
    off the event loop: the probe renders the template a few times)."""
    if st.template is None:
        return {}
    from service.chat.caps import caps_of

    c = await asyncio.to_thread(caps_of, st.template)
    return {"supports_system_role": c.system_role, "supports_tools": c.tools, "supports_tool_calls": c.tool_calls,
            "supports_tool_responses": c.tool_responses, "supports_parallel_tool_calls": c.parallel_tool_calls,
            "supports_object_arguments": c.object_arguments, "requires_non_null_content": c.non_null_content,
            "requires_typed_content": bool(getattr(st.template, "typed_content", False))}


@get("/props")
async def props(request: Request) -> Response:
    st = request.app.state.server
    m = st.loaded_model
    tok = m.tokenizer
    text = lambda t: tok.token_to_piece(t).decode("utf-8", "replace") if t is not None and t >= 0 else ""  # noqa: E731
    return Response({
        "default_generation_settings": _default_settings(st),
        "total_slots": st.n_slots,
        "model_alias": st.alias,
        "model_path": st.args.model,
        "chat_template": st.template.source if st.template is not None else "",
        "chat_template_caps": await _caps(st),
        "bos_token": text(tok.bos_id),
        "eos_token": text(tok.eos_id),
        # llama.cpp also says video when it has vision (through ffmpeg); llamajit takes no video input
        "modalities": {"vision": st.media is not None, "video": False, "audio": False},
        "media_marker": media_marker(),
        "build_info": st.build_info,
        "cors_proxy_enabled": st.args.ui_mcp_proxy,
        "is_sleeping": st.is_sleeping,
        "n_ctx": m.n_ctx,
        "endpoint_slots": st.args.slots,
        "endpoint_props": st.args.props,
        "endpoint_metrics": st.args.metrics,
        "offload": m.placement.describe(),  # llamajit: where each part runs (-ngl)
    })


@post("/props", status_code=200)
async def set_props(request: Request) -> Response:
    st = request.app.state.server
    if not st.args.props:
        raise not_supported("This server does not support changing global properties. Start it with `--props`")
    st.engine.power.want()
    decode(await request.body(), AnyObject)  # no property can be changed yet: the body is only checked
    return Response({"success": True})


def slot_json(st, s) -> dict:
    """One slot as llama-server's /slots reports it (read from the HTTP thread: a snapshot that
    may be one step old). A slot that never had a task shows only what it is; one that had shows
    its last task's id and parameters, with the counts of the task in progress (zero when idle)."""
    d = {"id": s.id, "n_ctx": s.n_ctx, "speculative": st.engine.config.spec.on, "is_processing": s.busy}
    task, g = s.last_task, s.gen
    if task is None:
        return d
    d.update({
        "id_task": task.id, "n_prompt_tokens": len(s.cache_tokens),
        "n_prompt_tokens_processed": g.n_evaluated if g is not None else 0,
        "n_prompt_tokens_cache": g.n_cached if g is not None else 0,
        "params": generation_settings(task.params, task.params.sampling, s.n_ctx, st.alias),
        "next_token": [{"has_next_token": g is not None, "has_new_line": g.has_new_line if g is not None else False,
                        "n_remain": g.n_remain if g is not None else -1,
                        "n_decoded": len(g.generated) if g is not None else 0}],
    })
    return d


@get("/slots")
async def slots(request: Request, fail_on_no_slot: int | None = None) -> Response:
    st = request.app.state.server
    if not st.args.slots:
        raise not_supported("This server does not support slots endpoint. Start it with `--slots`")
    st.engine.power.want()
    out = [slot_json(st, s) for s in st.engine.slots]
    if fail_on_no_slot and all(s["is_processing"] for s in out):
        raise unavailable("no slot available")
    return Response(out)
