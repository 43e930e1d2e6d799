"""/rerank on a tiny GGUF with a classification head, checked against the forward pass run
in-process; a model without a head refuses --reranking at startup."""

from __future__ import annotations

import numpy as np
import pytest

from service.model.forward import Batch
from service.model.model import Model
from tests.server_proc import SERVER_CACHE_TYPES, SMOLLM2, ServerProcess
from tests.synthetic import Spec, write_model

DOCS = ["abc", "hello", "xyz", "aaa"]


def oracle_score(path, tokens, w, b, dense, dense_b):
    m = Model(path, n_ctx=128, n_seq=1, max_batch=64, cache_types=SERVER_CACHE_TYPES)
    n = len(tokens)
    out = m.forward(Batch(np.array(tokens, np.int32), np.zeros(n, np.int32), np.arange(n, dtype=np.int32),
                          np.zeros(n, bool), np.ones(n, bool)))
    h = out.hidden[-1]
    return float((w @ np.tanh(dense @ h + dense_b))[0] + b[0])


def test_rerank_scores_pairs_with_the_head(tmp_path):
    spec = Spec(n_vocab=72)
    rng = np.random.default_rng(3)
    dense, dense_b = rng.normal(size=(64, 64)).astype(np.float32) / 8, rng.normal(size=64).astype(np.float32)
    w, b = rng.normal(size=(1, 64)).astype(np.float32), np.array([0.25], np.float32)
    path = write_model(tmp_path / "rank.gguf", spec, extra={"cls.weight": dense, "cls.bias": dense_b,
                                                             "cls.output.weight": w, "cls.output.bias": b})
    s = ServerProcess("-c", "256", "-np", "2", "--reranking", model=path)
    try:
        s.wait_ready()
        with s.client() as c:
            r = c.post("/v1/rerank", json={"query": "hi", "documents": DOCS, "top_n": 3})
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["object"] == "list" and len(out["results"]) == 3
            scores = [x["relevance_score"] for x in out["results"]]
            assert scores == sorted(scores, reverse=True)
            tok = lambda t: c.post("/tokenize", json={"content": t}).json()["tokens"]  # noqa: E731
            for res in out["results"]:
                pair = tok("hi") + [1] + tok(DOCS[res["index"]]) + [1]  # query EOS document EOS (no BOS, no SEP)
                assert res["relevance_score"] == pytest.approx(oracle_score(path, pair, w, b, dense, dense_b), abs=1e-4)
                assert res["document"]["text"] == DOCS[res["index"]]
            tei = c.post("/rerank", json={"query": "hi", "texts": DOCS, "return_text": True}).json()
            assert sorted(x["index"] for x in tei) == [0, 1, 2, 3] and all("text" in x for x in tei)
            assert c.post("/rerank", json={"query": 1, "documents": DOCS}).status_code == 400
            assert c.post("/v1/embeddings", json={"input": "abc"}).status_code == 400
    finally:
        s.stop()


def test_reranking_without_a_head_exits_1():
    s = ServerProcess("-c", "256", "--reranking", model=SMOLLM2)
    assert s.proc.wait(120) == 1
    assert "classification head" in s.output()
