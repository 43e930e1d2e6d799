"""kernels.routing.route against a float64 NumPy oracle of llama.cpp's softmax gating: softmax over
all experts, the k most probable best first, their probabilities (renormalised to sum 1 or not).

Tolerance 1e-6 on the weights: float32 exp and division against float64 (about 1e-7 relative)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.routing import route


def oracle(logits: np.ndarray, k: int, norm: bool) -> tuple[np.ndarray, np.ndarray]:
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k]  # stable: ties go to the lower index
    w = np.take_along_axis(p, ids, axis=1)
    if norm:
        w /= w.sum(axis=1, keepdims=True)
    return ids, w


def run(logits: np.ndarray, k: int, norm: bool) -> tuple[np.ndarray, np.ndarray]:
    ids, wts = np.zeros((len(logits), k), np.int32), np.zeros((len(logits), k), np.float32)
    route(ids, wts, logits.copy(), norm)
    return ids, wts


@pytest.mark.parametrize("n_exp,k", [(4, 2), (8, 3), (128, 8), (5, 5)])
@pytest.mark.parametrize("norm", [True, False])
def test_route_matches_oracle(n_exp, k, norm):
    logits = (np.random.default_rng(n_exp * 10 + k).standard_normal((9, n_exp)) * 3).astype(np.float32)
    ids, wts = run(logits, k, norm)
    ref_ids, ref_w = oracle(logits, k, norm)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(wts, ref_w, rtol=1e-6, atol=1e-7)
    if norm:
        np.testing.assert_allclose(wts.sum(axis=1), 1.0, rtol=1e-6)


def test_route_keeps_the_full_softmax_probabilities():
    """Without renormalisation the weights are the softmax over all experts (qwen2moe), not over the k
    chosen: [0, 0, ln 2, ln 2] gives 1/3 each to experts 2 and 3."""
    ids, wts = run(np.array([[0.0, 0.0, np.log(2), np.log(2)]], np.float32), 2, False)
    assert ids.tolist() == [[2, 3]]
    np.testing.assert_allclose(wts, [[1 / 3, 1 / 3]], rtol=1e-6)


def test_route_ties_and_large_logits():
    """Equal logits: the lower index first; logits far beyond exp's range do not overflow."""
    ids, wts = run(np.array([[1.0, 3.0, 3.0, 1.0], [1e4, -1e4, 1e4 - 1, 0.0]], np.float32), 2, True)
    assert ids.tolist() == [[1, 2], [0, 2]]
    np.testing.assert_allclose(wts[0], [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(wts[1], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))], rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_softmax_weight_against_oracle(k):
    """gpt-oss's gating (llama.cpp's softmax_weight): the k largest raw logits best first, weighted by a
    softmax over those k alone (not the full softmax's probabilities)."""
    from kernels.routing import route_softmax_weight

    logits = np.random.default_rng(k).standard_normal((9, 8)).astype(np.float32) * 3
    ids, wts = np.zeros((9, k), np.int32), np.zeros((9, k), np.float32)
    route_softmax_weight(ids, wts, logits.copy())
    want = np.argsort(-logits.astype(np.float64), axis=1, kind="stable")[:, :k]
    z = np.take_along_axis(logits.astype(np.float64), want, axis=1)
    w = np.exp(z - z[:, :1])
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(wts, w / w.sum(axis=1, keepdims=True), rtol=0, atol=1e-6)
    if k > 1:  # not the full softmax's probabilities
        assert np.abs(wts - oracle(logits, k, False)[1]).max() > 1e-2
