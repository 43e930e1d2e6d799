"""/embedding(s) and /v1/embeddings: pooled final hidden states, as llama-server gives them.

Pooling (--pooling, else the model's `<arch>.pooling_type`, else none): mean, cls (the
first token), last, or none (every token). /v1/embeddings needs a pooled vector and
normalizes it (L2); /embedding(s) take `embd_normalize` (-1 none, 0 max-abs, 1 taxicab,
2 Euclidean, p > 2 p-norm; default 2) and return unnormalized per-token vectors for none.
"""

from __future__ import annotations

import base64

import numpy as np
from litestar import Request, Response

from service.api.errors import bad_request
from service.api.params import builder
from service.api.protocol import EmbeddingsRequest, decode
from service.api.runs import Runs
from service.engine.task import TaskParams

POOLING_TYPES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


def pooling(state) -> str:
    if state.args.pooling:
        return state.args.pooling
    meta = state.model.file.metadata
    return POOLING_TYPES.get(int(meta.get(f"{state.model.cfg.arch}.pooling_type", 0)), "none")


def normalize(v: np.ndarray, mode: int) -> np.ndarray:
    v = v.astype(np.float64)
    if mode < 0:
        return v
    if mode == 0:
        s = np.abs(v).max() / 32760.0
    elif mode == 2:
        s = np.sqrt((v * v).sum())
    else:
        s = (np.abs(v) ** mode).sum() ** (1.0 / mode)
    return v / s if s > 0 else v * 0.0


def pool(h: np.ndarray, kind: str) -> np.ndarray:
    if kind == "mean":
        return h.astype(np.float64).mean(axis=0)
    if kind == "cls":
        return h[0]
    if kind == "last":
        return h[-1]
    raise ValueError(kind)


def _content_objects(inputs):
    """OpenAI's content form of an input, {"content": [{"type": "text", "text": ...}, ...]}, as the
    string its text parts make (joined as they are); any other part is refused (text-only model)."""
    def one(x, where: str):
        if not (isinstance(x, dict) and "content" in x):
            return x
        parts = x["content"]
        if not isinstance(parts, list) or not parts:
            raise bad_request(f"{where}.content: expected a non-empty array of content parts")
        texts = []
        for j, p in enumerate(parts):
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text" and isinstance(p.get("text"), str):
                texts.append(p["text"])
            elif kind in ("image_url", "input_audio", "input_video"):
                raise bad_request(f"{where}.content[{j}]: {kind} input is not supported by this model")
            else:
                raise bad_request(f"{where}.content[{j}].type: unsupported content part {kind!r}")
        return "".join(texts)

    if isinstance(inputs, list):
        return [one(x, f"input[{i}]") for i, x in enumerate(inputs)]
    return one(inputs, "input")


async def handle(request: Request) -> Response:
    st = request.app.state.server
    req = decode(await request.body(), EmbeddingsRequest)
    b = builder(request)
    oai = request.url.path == "/v1/embeddings"
    kind = pooling(st)
    if kind == "rank":
        raise bad_request("embeddings are not available with --pooling rank")
    if oai and kind == "none":
        raise bad_request("Pooling type 'none' is not OAI compatible. Please use a different pooling type")
    inputs = req.input if req.input is not None else req.content
    if inputs is None:
        raise bad_request('"input" (or "content") is required')
    prompts = b.prompts(_content_objects(inputs), "input")
    for p in prompts:
        b.check_context(p)
    runs = Runs(st.engine, [TaskParams(prompt=tuple(p), embd=True, cache_prompt=False) for p in prompts])
    vecs = [ev.hidden for ev in await runs.results(request)]  # Embedding events
    n_tokens = sum(len(p) for p in prompts)
    if oai:
        data = []
        for i, h in enumerate(vecs):
            v = normalize(pool(h, kind), 2).astype(np.float32)
            emb = v.tolist() if req.encoding_format == "float" else base64.b64encode(v.tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return Response({"object": "list", "model": st.alias, "data": data,
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})
    out = []
    for i, h in enumerate(vecs):
        if kind == "none":
            out.append({"index": i, "embedding": h.astype(np.float64).tolist()})
        else:
            out.append({"index": i, "embedding": [normalize(pool(h, kind), req.embd_normalize).tolist()]})
    return Response(out)
