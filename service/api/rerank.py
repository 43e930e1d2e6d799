"""/rerank (/reranking, /v1/rerank, /v1/reranking): score documents against a query.

Each (query, document) pair is one embedding task over `[BOS] query [EOS] [SEP] document
[EOS]` (BOS and SEP where the vocabulary uses them), scored by the model's classification
head on the last token. Jina's response shape; with `texts` instead of `documents`, TEI's.
"""

from __future__ import annotations

from litestar import Request, Response

from service.api.bridge import TaskRun, results
from service.api.completion import builder
from service.api.errors import bad_request
from service.api.params import decode_json, get
from service.engine.task import TaskParams


def pair_tokens(tok, query: str, doc: str) -> list[int]:
    enc = lambda s: tok.tokenize(s, add_special=False, parse_special=False)  # noqa: E731
    out = [tok.bos_id] if tok.add_bos and tok.bos_id is not None else []
    out += enc(query) + [tok.eos_id]
    if tok.sep_id is not None and tok.sep_id >= 0:
        out.append(tok.sep_id)
    return out + enc(doc) + [tok.eos_id]


async def handle(request: Request) -> Response:
    st = request.app.state.server
    body = decode_json(await request.body())
    b = builder(request)
    query = body.get("query")
    if not isinstance(query, str):
        raise bad_request('"query" must be a string')
    tei = "texts" in body
    docs = body.get("texts" if tei else "documents")
    if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
        raise bad_request(f'"{"texts" if tei else "documents"}" must be a non-empty array of strings')
    top_n = get(body, "top_n", int, len(docs))
    if top_n < 0:
        raise bad_request(f"top_n: must be >= 0, got {top_n}")
    prompts = [pair_tokens(b.tok, query, d) for d in docs]
    for p in prompts:
        b.check_context(p)
    runs = [TaskRun(st.engine, TaskParams(prompt=tuple(p), embd=True, cache_prompt=False)) for p in prompts]
    scores = [(i, st.rank_head.score(ev.hidden[-1])) for i, ev in enumerate(await results(request, runs))]
    scores.sort(key=lambda x: -x[1])
    scores = scores[:top_n]
    n_tokens = sum(len(p) for p in prompts)
    if tei:
        want_text = bool(get(body, "return_text", bool, False))
        return Response([{"index": i, "score": s, **({"text": docs[i]} if want_text else {})} for i, s in scores])
    want_docs = bool(get(body, "return_documents", bool, True))
    return Response({"model": st.alias, "object": "list", "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
                     "results": [{"index": i, "relevance_score": s, **({"document": {"text": docs[i]}} if want_docs else {})}
                                 for i, s in scores]})
