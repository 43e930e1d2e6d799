"""llama-server's sampler chain: each step narrows or reshapes a candidate set (_Cands) in place.

The steps run in params.samplers order; a step whose parameters switch it off returns at
once. Steps never reorder the draw's randomness: XTC's coin is the only draw in the chain,
and the caller draws the token after the chain (same seed, same tokens).
"""

from __future__ import annotations

import math

import numpy as np

from kernels import sampling as K
from kernels import sampling_dry as D
from kernels import sampling_filters as F
from service.sampling.candidates import _SORT_MAX, _Cands
from service.sampling.dry import DryTables
from service.sampling.history import TokenHistory
from service.sampling.params import SamplingParams

_F32 = np.float32


def apply_temperature(c: _Cands, t: float) -> None:
    """Divide the logits by t; t <= 0 keeps only the most likely token (greedy)."""
    t = _F32(t)  # llama.cpp's float: a dynamic temperature that rounds to 0 is greedy
    src = c.vals
    out = c.out()
    if t <= 0.0:
        K.greedy_mask(out, src, c.n)
    else:
        K.scale_logits(out, src, c.n, t)
    c.vals = out


class Chain:
    """One sequence's chain: its parameters, the history windows the penalties and DRY read, DRY's tables."""

    def __init__(self, params: SamplingParams, history: TokenHistory, repeat_last_n: int, dry_last_n: int, dry: DryTables):
        p = self.params = params
        self.history = history
        self.repeat_last_n = repeat_last_n
        self.dry_last_n = dry_last_n
        self.dry = dry
        self._dry_rep = np.zeros(history.cap, np.int32)  # DRY's repeat length per window position
        self.penalties_on = repeat_last_n > 0 and not (
            p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0
        )
        self.dry_on = p.dry_multiplier != 0.0 and p.dry_base >= 1.0 and dry_last_n > 0
        steps = {
            "penalties": self._penalties,
            "dry": self._dry,
            "top_n_sigma": self._top_n_sigma,
            "top_k": self._top_k,
            "typ_p": self._typical,
            "top_p": self._top_p,
            "min_p": self._min_p,
            "xtc": self._xtc,
            "temperature": self._temperature,
        }
        self._steps = [steps[name] for name in p.samplers]

    def run(self, c: _Cands, rng: np.random.Generator) -> None:
        self._rng = rng  # XTC's coin
        for step in self._steps:
            step(c)

    def _penalties(self, c: _Cands) -> None:
        if not self.penalties_on:
            return
        w = self.history.window(self.repeat_last_n)
        if w.size == 0:
            return
        if c.dense:
            c.own()
        p = self.params
        F.apply_penalties(
            c.vals, c.ws.counts, c.ids, w, c.dense, c.n,
            _F32(p.repeat_penalty), _F32(p.frequency_penalty), _F32(p.presence_penalty),
        )
        c.sorted = False

    def _dry(self, c: _Cands) -> None:
        if not self.dry_on:
            return
        p, t = self.params, self.dry
        w = self.history.window(self.dry_last_n)
        if w.size <= p.dry_allowed_length:
            return
        ws = c.ws
        marks = ws.counts
        if D.dry_max_repeats(marks, self._dry_rep, w, t.start, t.length, t.offset, t.tails, p.dry_allowed_length) < 0:
            return
        if c.dense:
            c.own()
        D.dry_apply(
            c.vals, marks, c.ids, w, t.start, t.length, c.dense, c.n,
            p.dry_allowed_length, _F32(p.dry_multiplier), _F32(p.dry_base), t.max_exp,
        )
        c.sorted = False

    def _top_n_sigma(self, c: _Cands) -> None:
        nsig = self.params.top_n_sigma
        if nsig <= 0.0 or c.n <= 1:
            return
        if c.dense:
            c.own()
        F.top_n_sigma_mask(c.vals, c.n, _F32(nsig))

    def _top_k(self, c: _Cands) -> None:
        k = self.params.top_k
        if k <= 0 or k >= c.n:
            return
        c.select(k, want_sorted=k <= _SORT_MAX)  # order only matters to later samplers' speed

    def _typical(self, c: _Cands) -> None:
        p = self.params
        if p.typical_p >= 1.0:
            return
        ws = c.ws
        K.softmax(ws.probs, c.vals, c.n)
        cnt = F.typical_order(ws.buf_ids, ws.probs, c.n, p.typical_p, p.min_keep)
        b = c.free()
        F.gather(ws.ids[b], ws.vals[b], c.ids, c.vals, ws.buf_ids, c.dense, cnt)
        c.take(b, cnt, False)

    def _top_p(self, c: _Cands) -> None:
        p = self.params
        if p.top_p >= 1.0:
            return
        top_p, min_keep = _F32(p.top_p), p.min_keep
        if not c.sorted and c.n <= 1024:
            c.select(c.n)
        if c.sorted:
            m = K.max_logit(c.vals, c.n)
            cut = F.top_p_cut(c.vals, c.n, m, K.exp_sum(c.vals, c.n, m), top_p, min_keep)
            if cut > 0:
                c.n = cut
            return
        ws, b = c.ws, c.free()
        cut = F.top_p_filter(
            ws.ids[b], ws.vals[b], ws.buf_ids, ws.buf_vals, ws.probs,
            c.ids, c.vals, c.dense, c.n, top_p, min_keep,
        )
        if cut > 0:
            c.take(b, cut, False)
        else:  # min_keep asks for more than the nucleus
            c.select(min(c.n, min_keep))

    def _min_p(self, c: _Cands) -> None:
        p = self.params
        if p.min_p <= 0.0 or c.n == 0:
            return
        thr = _F32(K.max_logit(c.vals, c.n)) + np.log(_F32(p.min_p))
        cnt = K.count_at_least(c.vals, c.n, thr)
        if c.sorted:  # the kept tokens are a prefix; the first always stays
            c.n = min(c.n, max(cnt, p.min_keep, 1))
            return
        if cnt > 0 and cnt >= p.min_keep:
            if cnt < c.n:
                ws, b = c.ws, c.free()
                w = K.filter_at_least(ws.ids[b], ws.vals[b], c.ids, c.vals, c.dense, c.n, thr)
                c.take(b, w, False)
            return
        c.select(min(c.n, max(cnt, p.min_keep, 1)))

    def _xtc(self, c: _Cands) -> None:
        p = self.params
        if p.xtc_probability <= 0.0 or p.xtc_threshold > 0.5 or c.n < 2:
            return
        if self._rng.random() > p.xtc_probability:
            return
        if not c.sorted:
            c.select(c.n)
        K.softmax(c.ws.probs, c.vals, c.n)
        last = F.xtc_cut(c.ws.probs, c.n, _F32(p.xtc_threshold))
        if c.n - last >= p.min_keep and last > 0:  # drop all but the least likely of the top choices
            c.ids, c.vals, c.n = c.ids[last:], c.vals[last:], c.n - last

    def _temperature(self, c: _Cands) -> None:
        p = self.params
        if p.dynatemp_range <= 0.0:
            apply_temperature(c, p.temperature)
            return
        if c.n <= 1:
            return
        lo = max(0.0, p.temperature - p.dynatemp_range)
        hi = p.temperature + p.dynatemp_range
        K.softmax(c.ws.probs, c.vals, c.n)
        h = F.entropy(c.ws.probs, c.n)
        norm = max(0.0, h / math.log(c.n)) if math.isfinite(h) else 0.0  # rounding can make h < 0
        apply_temperature(c, lo + (hi - lo) * math.pow(norm, p.dynatemp_exponent))
