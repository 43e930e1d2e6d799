"""A per-sequence sampler: llama-server's sampler chain over one logits row per call.

Usage (one Sampler per sequence):

    s = Sampler(params, n_vocab, eog_ids=tokenizer.eog_ids, n_ctx=n_ctx)
    s.accept_many(prompt_tokens)      # llama-server feeds the prompt to the penalties/DRY history
    tok = s.sample(logits_row)        # float32 (n_vocab,)
    s.accept(tok)                     # then decode tok and repeat

The chain is llama.cpp's common_sampler: logit_bias (with the end-of-generation ids at -inf
when ignore_eos), then either params.samplers in order followed by a draw from the
remaining distribution, or, when mirostat is 1 or 2, temperature followed by Mirostat
(penalties, DRY and the other filters are then skipped, as in llama.cpp).

Randomness: each Sampler owns a numpy Generator seeded from params.seed (a random 32-bit
seed when the seed is -1/0xFFFFFFFF; `seed` reports it). The draws differ from llama.cpp's
std::mt19937, so the same seed picks other tokens than llama-server does; the
distributions sampled are the same.

Scratch: everything sized n_vocab lives in a SamplerWorkspace. Samplers that run one after
another on one thread may share one (pass `workspace=`), which keeps memory at ~9 floats per
vocabulary entry in all; each Sampler makes its own otherwise. Results a Sampler keeps
(token probabilities) are copied out of the workspace before sample() returns, except
`candidates()`, which reads the workspace and is valid until the next sample() on it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence

import numpy as np

from kernels import sampling as K
from kernels import sampling_dry as D
from kernels import sampling_filters as F
from service.sampling.candidates import _SORT_MAX, SamplerWorkspace, TokenProbs, _Cands, _select_cap
from service.sampling.params import LLAMA_DEFAULT_SEED, SamplingParams

_F32 = np.float32
_LN2 = math.log(2.0)
_FLOAT_MAX_LOG = 88.7228391  # log(FLT_MAX): caps DRY's exponent as llama.cpp does


class Sampler:
    """One sequence's sampler: its chain, RNG, token history (penalties, DRY) and Mirostat state."""

    def __init__(
        self,
        params: SamplingParams,
        n_vocab: int,
        *,
        eog_ids: Iterable[int] = (),
        dry_breakers: Sequence[Sequence[int]] | None = None,
        n_ctx: int | None = None,
        workspace: SamplerWorkspace | None = None,
    ):
        """eog_ids: end-of-generation tokens, banned when params.ignore_eos.
        dry_breakers: DRY's sequence breakers as token-id sequences (see dry_breaker_sequences);
        None: no breakers. n_ctx: the context size that -1 means for repeat_last_n and
        dry_penalty_last_n (llama-server's slot context).
        """
        if workspace is None:
            workspace = SamplerWorkspace(n_vocab)
        elif workspace.n_vocab != n_vocab:
            raise ValueError(f"workspace: sized for {workspace.n_vocab} tokens, not {n_vocab}")
        self.params = params
        self.n_vocab = n_vocab
        self._ws = workspace

        def last_n(name: str, v: int) -> int:
            if v != -1:
                return v
            if n_ctx is None:
                raise ValueError(f"{name}: -1 (the context size) needs n_ctx")
            return n_ctx

        p = params
        self._repeat_last_n = last_n("repeat_last_n", p.repeat_last_n)
        self._dry_last_n = last_n("dry_penalty_last_n", p.dry_penalty_last_n)
        self._penalties_on = self._repeat_last_n > 0 and not (
            p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0
        )
        self._dry_on = p.dry_multiplier != 0.0 and p.dry_base >= 1.0 and self._dry_last_n > 0

        # logit_bias + banned eog ids, out-of-range ids dropped (as llama-server does)
        bias = [(t, b) for t, b in p.logit_bias if 0 <= t < n_vocab]
        if p.ignore_eos:
            for t in eog_ids:
                if not 0 <= int(t) < n_vocab:
                    raise ValueError(f"eog_ids: token {t} outside [0, {n_vocab})")
                bias.append((int(t), -math.inf))
        self._bias_tok = np.array([t for t, _ in bias], np.int32)
        self._bias_val = np.array([b for _, b in bias], np.float32)

        self._dry_setup(dry_breakers if self._dry_on else None)
        cap = max(1, self._repeat_last_n if self._penalties_on else 0, self._dry_last_n if self._dry_on else 0)
        self._hist_cap = cap
        self._hist = np.zeros(2 * cap, np.int32)
        self._hlen = 0
        self._dry_rep = np.zeros(cap, np.int32)

        self._seed = secrets.randbits(32) if p.seed_is_random else int(p.seed)
        while self._seed == LLAMA_DEFAULT_SEED:
            self._seed = secrets.randbits(32)
        self._rng = np.random.default_rng(self._seed)
        self.mu = 2.0 * p.mirostat_tau

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
        self._chain = [steps[name] for name in p.samplers]
        self._last: tuple | None = None
        self._final: tuple[np.ndarray, np.ndarray, int, bool] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        """The seed the RNG was started from (drawn at random when params.seed was -1)."""
        return self._seed

    @property
    def history(self) -> np.ndarray:
        """The accepted tokens the penalties/DRY windows can still see, oldest first."""
        return self._hist[max(0, self._hlen - self._hist_cap) : self._hlen].copy()

    def accept(self, token: int) -> None:
        """Record a token of the sequence (prompt or generated) for penalties and DRY."""
        t = int(token)
        if not 0 <= t < self.n_vocab:
            raise ValueError(f"token {t} outside [0, {self.n_vocab})")
        if self._hlen == self._hist.shape[0]:
            cap = self._hist_cap
            self._hist[:cap] = self._hist[self._hlen - cap : self._hlen]
            self._hlen = cap
        self._hist[self._hlen] = t
        self._hlen += 1

    def accept_many(self, tokens: Iterable[int]) -> None:
        toks = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens, np.int64).ravel()
        if toks.size and (toks.min() < 0 or toks.max() >= self.n_vocab):
            raise ValueError(f"tokens outside [0, {self.n_vocab})")
        for t in toks[-self._hist_cap :]:
            self.accept(int(t))

    def reset(self) -> None:
        """Forget the history and Mirostat state; restart the RNG from the same seed."""
        self._hlen = 0
        self.mu = 2.0 * self.params.mirostat_tau
        self._rng = np.random.default_rng(self._seed)

    def _window(self, n: int) -> np.ndarray:
        return self._hist[max(0, self._hlen - n) : self._hlen]

    # -- sampling ------------------------------------------------------------------------

    def sample(self, logits: np.ndarray) -> int:
        """Run the chain on one row of logits (float32, n_vocab) and draw a token; logits are not modified."""
        x = np.ascontiguousarray(logits, dtype=np.float32)
        if x.shape != (self.n_vocab,):
            raise ValueError(f"logits: expected shape ({self.n_vocab},), got {x.shape}")
        ws = self._ws
        c = _Cands(ws, x)
        if self._bias_tok.size:
            c.own()
            K.add_logit_bias(c.vals, self._bias_tok, self._bias_val, self._bias_tok.size)
        p = self.params
        if p.mirostat == 0:
            for step in self._chain:
                step(c)
            pos = self._draw(c)
        else:
            self._temp(c, p.temperature)
            pos = self._mirostat1(c) if p.mirostat == 1 else self._mirostat2(c)
        token = pos if c.dense else int(c.ids[pos])
        prob = float(ws.probs[pos])
        self._final = (c.ids, ws.probs, c.n, c.dense)
        self._last = (token, prob, None, None)
        if p.n_probs > 0:  # copied out now: the workspace may serve another Sampler next
            k = min(p.n_probs, c.n)
            out_ids, out_p = np.zeros(k, np.int32), np.zeros(k, np.float32)
            K.top_k_select(out_ids, out_p, ws.buf_ids, ws.buf_vals, ws.tmp, c.ids, ws.probs, c.dense, c.n, k, _select_cap(c.n, k), True)
            self._last = (token, prob, out_ids, out_p)
        return token

    @property
    def last_probs(self) -> TokenProbs | None:
        """The last sampled token's probability and the top n_probs after the chain (llama-server's post_sampling_probs)."""
        if self._last is None:
            return None
        token, prob, ids, probs = self._last
        if ids is None:
            ids, probs = np.zeros(0, np.int32), np.zeros(0, np.float32)
        return TokenProbs(token, prob, ids, probs)

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """The last sample()'s final candidate set (ids, probs), probability descending; valid until the workspace's next sample()."""
        if self._final is None:
            raise RuntimeError("candidates() before sample()")
        ids, probs, n, dense = self._final
        ws = self._ws
        out_ids, out_p = np.zeros(n, np.int32), np.zeros(n, np.float32)
        K.top_k_select(out_ids, out_p, ws.buf_ids, ws.buf_vals, ws.tmp, ids, probs, dense, n, n, n, True)
        return out_ids, out_p

    def pre_sampling_probs(self, logits: np.ndarray, token: int, n_probs: int) -> TokenProbs:
        """Softmax of the raw logits: token's probability and the top n_probs (llama-server's default n_probs output)."""
        x = np.ascontiguousarray(logits, dtype=np.float32)
        n = x.shape[0]
        m = K.max_logit(x, n)
        s = K.exp_sum(x, n, m)
        k = max(0, min(n_probs, n))
        ws = self._ws
        ids, vals = np.zeros(k, np.int32), np.zeros(k, np.float32)
        K.top_k_select(ids, vals, ws.buf_ids, ws.buf_vals, ws.tmp, ws.ids[0], x, True, n, k, _select_cap(n, k), True)
        probs = (np.exp(vals.astype(np.float64) - m) / s).astype(np.float32)
        return TokenProbs(int(token), float(np.exp(np.float64(x[token]) - m) / s), ids, probs)

    def _draw(self, c: _Cands) -> int:
        pos = K.sample_dist(self._ws.probs, c.vals, c.n, self._rng.random())
        return pos if pos >= 0 else 0  # every candidate at -inf: the first

    # -- the chain's steps ---------------------------------------------------------------

    def _penalties(self, c: _Cands) -> None:
        if not self._penalties_on:
            return
        w = self._window(self._repeat_last_n)
        if w.size == 0:
            return
        if c.dense:
            c.own()
        p = self.params
        F.apply_penalties(
            c.vals, self._ws.counts, c.ids, w, c.dense, c.n,
            _F32(p.repeat_penalty), _F32(p.frequency_penalty), _F32(p.presence_penalty),
        )
        c.sorted = False

    def _dry_setup(self, breakers: Sequence[Sequence[int]] | None) -> None:
        seqs = sorted({tuple(int(t) for t in b) for b in (breakers or ()) if len(b) > 0})
        for s in seqs:
            if min(s) < 0 or max(s) >= self.n_vocab:
                raise ValueError(f"dry_breakers: token ids outside [0, {self.n_vocab}) in {list(s)}")
        heads = np.array([s[0] for s in seqs], np.int64)
        self._brk_start = np.zeros(self.n_vocab + 1 if self._dry_on else 2, np.int32)
        if seqs:
            np.cumsum(np.bincount(heads, minlength=self.n_vocab), out=self._brk_start[1:])
        self._brk_len = np.array([len(s) - 1 for s in seqs] or [0], np.int32)
        self._brk_off = np.zeros(max(1, len(seqs)), np.int32)
        if seqs:
            self._brk_off[1:] = np.cumsum(self._brk_len)[:-1]
        tails = [t for s in seqs for t in s[1:]]
        self._brk_tails = np.array(tails or [0], np.int32)
        base = self.params.dry_base
        self._dry_max_exp = int(_FLOAT_MAX_LOG / math.log(base)) if base > 1.000001 else 0

    def _dry(self, c: _Cands) -> None:
        if not self._dry_on:
            return
        p = self.params
        w = self._window(self._dry_last_n)
        if w.size <= p.dry_allowed_length:
            return
        marks = self._ws.counts
        if D.dry_max_repeats(marks, self._dry_rep, w, self._brk_start, self._brk_len, self._brk_off, self._brk_tails, p.dry_allowed_length) < 0:
            return
        if c.dense:
            c.own()
        D.dry_apply(
            c.vals, marks, c.ids, w, self._brk_start, self._brk_len, c.dense, c.n,
            p.dry_allowed_length, _F32(p.dry_multiplier), _F32(p.dry_base), self._dry_max_exp,
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
        ws = self._ws
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
        ws, b = self._ws, c.free()
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
                ws, b = self._ws, c.free()
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
        K.softmax(self._ws.probs, c.vals, c.n)
        last = F.xtc_cut(self._ws.probs, c.n, _F32(p.xtc_threshold))
        if c.n - last >= p.min_keep and last > 0:  # drop all but the least likely of the top choices
            c.ids, c.vals, c.n = c.ids[last:], c.vals[last:], c.n - last

    def _temp(self, c: _Cands, t: float) -> None:
        t = _F32(t)  # llama.cpp's float: a dynamic temperature that rounds to 0 is greedy
        src = c.vals
        out = c.out()
        if t <= 0.0:
            K.greedy_mask(out, src, c.n)
        else:
            K.scale_logits(out, src, c.n, t)
        c.vals = out

    def _temperature(self, c: _Cands) -> None:
        p = self.params
        if p.dynatemp_range <= 0.0:
            self._temp(c, p.temperature)
            return
        if c.n <= 1:
            return
        lo = max(0.0, p.temperature - p.dynatemp_range)
        hi = p.temperature + p.dynatemp_range
        K.softmax(self._ws.probs, c.vals, c.n)
        h = F.entropy(self._ws.probs, c.n)
        norm = max(0.0, h / math.log(c.n)) if math.isfinite(h) else 0.0  # rounding can make h < 0
        self._temp(c, lo + (hi - lo) * math.pow(norm, p.dynatemp_exponent))

    # -- Mirostat ------------------------------------------------------------------------

    def _mirostat_update(self, pos: int) -> None:
        prob = float(self._ws.probs[pos])
        surprise = -math.log2(prob) if prob > 0.0 else math.inf
        self.mu -= self.params.mirostat_eta * (surprise - self.params.mirostat_tau)

    def _mirostat1(self, c: _Cands) -> int:
        ws = self._ws
        m = min(100, c.n)
        kk = K.top_k_select(
            ws.small_ids, ws.small_vals, ws.buf_ids, ws.buf_vals, ws.tmp,
            c.ids, c.vals, c.dense, c.n, m, _select_cap(c.n, m), True,
        )
        k = F.mirostat_k(ws.small_vals, kk, self.n_vocab, self.mu)
        k = 1 if not (math.isfinite(k) and k >= 1.0) else min(int(k), c.n)
        if k < c.n:
            c.select(k, want_sorted=k <= _SORT_MAX)
        pos = self._draw(c)
        self._mirostat_update(pos)
        return pos

    def _mirostat2(self, c: _Cands) -> int:
        m = K.max_logit(c.vals, c.n)
        s = K.exp_sum(c.vals, c.n, m)
        # keep -log2(p) <= mu, i.e. logit >= max + log(sum) - mu * ln 2
        thr = _F32(m + math.log(s) - self.mu * _LN2) if s > 0 else _F32(m)
        cnt = K.count_at_least(c.vals, c.n, thr)
        if cnt == 0:
            c.select(1)
        elif cnt < c.n:
            ws, b = self._ws, c.free()
            w = K.filter_at_least(ws.ids[b], ws.vals[b], c.ids, c.vals, c.dense, c.n, thr)
            c.take(b, w, False)
        pos = self._draw(c)
        self._mirostat_update(pos)
        return pos
