"""Mirostat 1 and 2: samplers that steer the surprise of each token towards tau.

Both keep mu (the largest surprise allowed, in bits; starts at 2 tau) and update it from
the surprise of the token drawn: mu -= eta (surprise - tau). They replace the whole chain
(after temperature), as in llama.cpp.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from kernels import sampling as K
from kernels import sampling_filters as F
from service.sampling.candidates import _SORT_MAX, _Cands, _select_cap

_F32 = np.float32
_LN2 = math.log(2.0)


class Mirostat:
    """One sequence's Mirostat state; version 1 or 2."""

    def __init__(self, version: int, tau: float, eta: float, n_vocab: int):
        if version not in (1, 2):
            raise ValueError(f"mirostat: expected 1 or 2, got {version!r}")
        self.version, self.tau, self.eta, self.n_vocab = version, tau, eta, n_vocab
        self.mu = 2.0 * tau

    def reset(self) -> None:
        self.mu = 2.0 * self.tau

    def sample(self, c: _Cands, draw: Callable[[_Cands], int]) -> int:
        """Narrow c, draw a position in it with `draw`, update mu; returns the position."""
        pos = self._v1(c, draw) if self.version == 1 else self._v2(c, draw)
        prob = float(c.ws.probs[pos])
        surprise = -math.log2(prob) if prob > 0.0 else math.inf
        self.mu -= self.eta * (surprise - self.tau)
        return pos

    def _v1(self, c: _Cands, draw: Callable[[_Cands], int]) -> int:
        # Estimate the Zipf exponent from the top 100 and keep the k tokens that make the
        # expected surprise mu.
        ws = c.ws
        m = min(100, c.n)
        kk = K.top_k_select(
            ws.small_ids, ws.small_vals, ws.buf_ids, ws.buf_vals, ws.tmp,
            c.ids, c.vals, c.dense, c.n, m, _select_cap(c.n, m), True,
        )
        k = F.mirostat_k(ws.small_vals, kk, self.n_vocab, self.mu)
        k = 1 if not (math.isfinite(k) and k >= 1.0) else min(int(k), c.n)
        if k < c.n:
            c.select(k, want_sorted=k <= _SORT_MAX)
        return draw(c)

    def _v2(self, c: _Cands, draw: Callable[[_Cands], int]) -> int:
        m = K.max_logit(c.vals, c.n)
        s = K.exp_sum(c.vals, c.n, m)
        # keep -log2(p) <= mu, i.e. logit >= max + log(sum) - mu * ln 2
        thr = _F32(m + math.log(s) - self.mu * _LN2) if s > 0 else _F32(m)
        cnt = K.count_at_least(c.vals, c.n, thr)
        if cnt == 0:
            c.select(1)
        elif cnt < c.n:
            ws, b = c.ws, c.free()
            w = K.filter_at_least(ws.ids[b], ws.vals[b], c.ids, c.vals, c.dense, c.n, thr)
            c.take(b, w, False)
        return draw(c)
