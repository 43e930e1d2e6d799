"""/rerank (/reranking, /v1/rerank, /v1/reranking): score documents against a query.

Each (query, document) pair is one embedding task over `[BOS] query [EOS] [SEP] document
[EOS]` (BOS and SEP where the vocabulary uses them), scored by the model's classification
head on the last token (an encoder's: on the first, [CLS]). Jina's response shape; with `texts`
instead of `documents`, TEI's.
"""

from __future__ import annotations

from litestar import Request, Response

from service.api.errors import bad_request
from service.api.params import builder
from service.api.protocol import RerankRequest, decode
from service.api.runs import Runs
from service.engine.task import TaskParams


def pair_tokens(tok, query: str, doc: str) -> list[int]:
    enc = lambda s: tok.tokenize(s, add_special=False, parse_special=False)  # noqa: E731
    if tok.vocab_type in ("wpm", "ugm"):  # llama.cpp's flags as the file sets them: EOS (else SEP) with add_eos
        v, eos = tok.vocab, tok.eos_id if tok.eos_id is not None else tok.sep_id
        end = [eos] if v.add_eos else []
        return ([tok.bos_id] if v.add_bos else []) + enc(query) + end + ([tok.sep_id] if v.add_sep else []) \
            + enc(doc) + end
    out = [tok.bos_id] if tok.add_bos and tok.bos_id is not None else []
    out += enc(query) + [tok.eos_id]
    if tok.sep_id is not None and tok.sep_id >= 0:
        out.append(tok.sep_id)
    return out + enc(doc) + [tok.eos_id]


def scored_row(hidden, causal: bool):
    """The hidden state the head scores, as llama.cpp's rank pooling picks it: a decoder's last token
    (the end of the pair), an encoder's first ([CLS], which attends to the whole pair)."""
    return hidden[-1] if causal else hidden[0]


async def handle(request: Request) -> Response:
    st = request.app.state.server
    req = decode(await request.body(), RerankRequest)
    b = builder(request)
    tei = req.texts is not None
    docs = req.texts if tei else req.documents
    if not docs:
        raise bad_request(f'"{"texts" if tei else "documents"}" must be a non-empty array of strings')
    top_n = req.top_n if req.top_n is not None else len(docs)
    if top_n < 0:
        raise bad_request(f"top_n: must be >= 0, got {top_n}")
    prompts = [pair_tokens(b.tok, req.query, d) for d in docs]
    for p in prompts:
        b.check_context(p)
    runs = Runs(st.engine, [TaskParams(prompt=tuple(p), embd=True, cache_prompt=False) for p in prompts])
    scores = [(i, st.rank_head.score(scored_row(ev.hidden, st.model.cfg.causal)))
              for i, ev in enumerate(await runs.results(request))]
    scores.sort(key=lambda x: -x[1])
    scores = scores[:top_n]
    n_tokens = sum(len(p) for p in prompts)
    if tei:
        return Response([{"index": i, "score": s, **({"text": docs[i]} if req.return_text else {})} for i, s in scores])
    return Response({"model": st.alias, "object": "list", "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
                     "results": [{"index": i, "relevance_score": s,
                                  **({"document": {"text": docs[i]}} if req.return_documents else {})}
                                 for i, s in scores]})
