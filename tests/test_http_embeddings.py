"""Embedding values through the HTTP server (service/api/embeddings.py), for every pooling
(--pooling mean, cls, last, none), against two oracles, pooled here with NumPy as llama.cpp pools
(the mean over the tokens, the first token, the last one, or every token for none):

- exact: the final-norm hidden states of the same prompt from our own forward pass, run in this
  process (service.model.Model, one batch, with the server's default f16 KV cache): the server
  must give these bits pooled and normalized, so the bound is float64 rounding (measured: 0.0,
  identical). Both processes must run the same machine code: tests/conftest.py compiles the
  kernels in a subprocess first, so that both load them from Numba's cache (a kernel compiled
  afresh in a process rounds differently from its cached object code, see tests/test_parity.py);
- independent: tests/oracles/model.py's float64 NumPy forward pass of the same file (its own
  reading of the weights, int8 activations as llama.cpp's quantized products take them).
  Measured relative error of a token's vector, worst over the inputs below: 0.084 (0.020 for
  their means); the bound, 0.13, is 1.5x that. Int8 rounding flips amplify over 30 layers (a
  float64 oracle without int8 activations is 0.12 off), while the logits stay within
  tests/test_parity.py's bounds.

What fails it: a wrong pooling (the other poolings' vectors are 0.35 to 1.3 away, relative), a
wrong normalization, hidden states from the wrong rows or from before the final norm, a forward
pass that drifts.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from tests.server_proc import SERVER_CACHE_TYPES, SMOLLM2, ServerProcess

EXACT_TOL = 1e-6  # against our own forward pass: rounding of float64 sums only
ORACLE_TOL = 0.13  # against the independent float64 oracle: 1.5x the measured 0.084
INPUTS = ["hello world", "The cat sat on the mat, and the dog slept by the fire."]


@lru_cache(maxsize=None)
def own_hidden(tokens: tuple[int, ...]) -> np.ndarray:
    from service.model.forward import Batch

    m = _own_model()
    m.cache.clear(0)
    n = len(tokens)
    out = m.forward(Batch(np.array(tokens, np.int32), np.zeros(n, np.int32), np.arange(n, dtype=np.int32),
                          np.zeros(n, bool), hidden=np.ones(n, bool)))
    return out.hidden.astype(np.float64)


@lru_cache(maxsize=1)
def _own_model():
    from service.model.model import Model

    return Model(SMOLLM2, n_ctx=512, n_seq=1, max_batch=512, cache_types=SERVER_CACHE_TYPES)


@lru_cache(maxsize=None)
def oracle_hidden(tokens: tuple[int, ...]) -> np.ndarray:
    from tests.oracles import model as oracle

    return oracle.hidden(_oracle_model(), list(tokens), act_q8=True)


@lru_cache(maxsize=1)
def _oracle_model():
    from tests.oracles import model as oracle

    return oracle.load(SMOLLM2)


def pooled(h: np.ndarray, kind: str) -> np.ndarray:
    return {"mean": lambda: h.mean(axis=0), "cls": lambda: h[0], "last": lambda: h[-1]}[kind]()


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module", params=["mean", "cls", "last", "none"])
def served(request):
    s = ServerProcess("-c", "512", "-np", "2", "--embeddings", "--pooling", request.param)
    try:
        yield s.wait_ready(), request.param
    finally:
        s.stop()


def test_embeddings_match_the_oracle(served):
    s, kind = served
    with s.client() as c:
        toks = [c.post("/tokenize", json={"content": t, "add_special": True}).json()["tokens"] for t in INPUTS]
        native = c.post("/embedding", json={"content": toks, "embd_normalize": -1})
        assert native.status_code == 200, native.text
        oai = c.post("/v1/embeddings", json={"input": toks})
    for i, (t, got) in enumerate(zip(toks, native.json())):
        own, ref = own_hidden(tuple(t)), oracle_hidden(tuple(t))
        assert got["index"] == i
        if kind == "none":  # every token's vector, unnormalized
            vecs = np.array(got["embedding"])
            assert vecs.shape == (len(t), 576)
            for j in range(len(t)):
                assert rel(vecs[j], own[j]) < EXACT_TOL, (i, j, rel(vecs[j], own[j]))
                assert rel(vecs[j], ref[j]) < ORACLE_TOL, (i, j, rel(vecs[j], ref[j]))
            continue
        (raw,) = got["embedding"]
        want = pooled(own, kind)
        assert rel(raw, want) < EXACT_TOL, (kind, i, rel(raw, want))
        assert rel(raw, pooled(ref, kind)) < ORACLE_TOL, (kind, i, rel(raw, pooled(ref, kind)))
        unit = np.array(oai.json()["data"][i]["embedding"])
        assert abs(np.linalg.norm(unit) - 1) < 1e-5
        assert rel(unit, want / np.linalg.norm(want)) < 1e-6  # float32 on the wire
    if kind == "none":
        assert oai.status_code == 400 and "not OAI compatible" in oai.json()["error"]["message"]
    else:
        assert oai.status_code == 200 and [d["index"] for d in oai.json()["data"]] == [0, 1]


def test_normalizations(served):
    """embd_normalize: 0 max-abs (scaled to 32760), 1 taxicab, 2 Euclidean, 3 a p-norm, -1 none."""
    s, kind = served
    if kind == "none":
        pytest.skip("pooling none gives the tokens' vectors unnormalized")
    with s.client() as c:
        def one(mode):
            return np.array(c.post("/embedding", json={"content": INPUTS[1], "embd_normalize": mode}).json()[0]
                            ["embedding"][0])
        raw = one(-1)
        assert np.allclose(one(0), raw / np.abs(raw).max() * 32760, rtol=1e-5)
        assert np.allclose(one(1), raw / np.abs(raw).sum(), rtol=1e-5)
        assert np.allclose(one(2), raw / np.linalg.norm(raw), rtol=1e-5)
        assert np.allclose(one(3), raw / (np.abs(raw) ** 3).sum() ** (1 / 3), rtol=1e-5)
