"""Mixture-of-experts routing: each token's top-k experts and their weights.

As llama.cpp's softmax gating computes them: a softmax over all experts' router logits, the k
largest probabilities in descending order, and (qwen3moe, Mixtral) those k weights divided by
their sum. The weights are the full softmax's probabilities, not a softmax over the k chosen.
gpt-oss's gating (llama.cpp's softmax_weight) is the other way round: route_softmax_weight.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import kernel


@kernel
def route(ids, wts, logits, norm):
    """ids int32 (T, K), wts float32 (T, K) <- logits float32 (T, E), which it overwrites.

    Row t of ids: the K experts of largest softmax probability, best first (ties: lower index);
    wts: their probabilities, renormalised to sum 1 when norm. logits is left holding scratch.
    """
    n_tok, n_exp = logits.shape
    k = ids.shape[1]
    for t in range(n_tok):
        row = logits[t]
        mx = row[0]
        for e in range(1, n_exp):
            mx = max(mx, row[e])
        total = 0.0  # float64, as ggml's soft_max sums
        for e in range(n_exp):
            p = np.exp(row[e] - mx)
            row[e] = p
            total += p
        inv = np.float32(1.0 / total)
        for e in range(n_exp):
            row[e] *= inv
        picked = np.float32(0.0)
        for j in range(k):
            best = 0
            for e in range(1, n_exp):
                if row[e] > row[best]:
                    best = e
            ids[t, j] = best
            wts[t, j] = row[best]
            picked += row[best]
            row[best] = -1.0  # probabilities are >= 0: never picked again
        if norm:  # picked >= K / E: llama.cpp's clamp of the sum (at 6.1e-5) never binds after a softmax
            inv_sum = np.float32(1.0) / picked
            for j in range(k):
                wts[t, j] *= inv_sum


@kernel
def route_softmax_weight(ids, wts, logits):
    """ids int32 (T, K), wts float32 (T, K) <- logits float32 (T, E), which it overwrites: gpt-oss's
    gating (llama.cpp's softmax_weight), the K largest raw logits best first (ties: lower index),
    weighted by a softmax over those K alone."""
    n_tok, n_exp = logits.shape
    k = ids.shape[1]
    for t in range(n_tok):
        row = logits[t]
        for j in range(k):
            best = 0
            for e in range(1, n_exp):
                if row[e] > row[best]:
                    best = e
            ids[t, j] = best
            wts[t, j] = row[best]
            row[best] = np.float32(-3.0e38)  # below any logit: never picked again
        mx = wts[t, 0]  # the first is the largest
        total = 0.0  # float64, as ggml's soft_max sums
        for j in range(k):
            p = np.exp(wts[t, j] - mx)
            wts[t, j] = p
            total += p
        inv = np.float32(1.0 / total)
        for j in range(k):
            wts[t, j] *= inv
