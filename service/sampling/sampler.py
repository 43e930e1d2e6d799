"""A per-sequence sampler: llama-server's sampler chain over one logits row per call.

Usage (one Sampler per sequence):

    s = Sampler(params, n_vocab, eog_ids=tokenizer.eog_ids, n_ctx=n_ctx)
    s.accept_many(prompt_tokens)      # llama-server feeds the prompt to the penalties/DRY history
    tok = s.sample(logits_row)        # float32 (n_vocab,)
    s.accept(tok)                     # then decode tok and repeat

The chain is llama.cpp's common_sampler: the grammar's mask when there is a constraint
(only the tokens it allows stay candidates), logit_bias (with the end-of-generation ids at
-inf when ignore_eos), then either params.samplers in order (chain.py) followed by a draw
from the remaining distribution, or, when mirostat is 1 or 2, temperature followed by
Mirostat (mirostat.py; penalties, DRY and the other filters are then skipped, as in llama.cpp).

Structured output: `constraint` (service.sampling.grammar.Constraint) is this sequence's
grammar state. sample() asks it for the allowed-token mask (once per step) and draws only
among those tokens (llama.cpp's grammar-first order: the mask, then the chain); accept()
advances it. The grammar allows end-of-generation tokens only where it may end, and
nothing else once it is finished, so a finished grammar yields an end-of-generation token
even under ignore_eos. The mask wins over logit_bias: if the bias leaves every allowed token
at -inf, the allowed token with the highest raw logit is taken. Without a constraint none
of this runs.

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
from typing import TYPE_CHECKING

import numpy as np

from kernels import sampling as K
from kernels import sampling_mask as M
from service.sampling.candidates import SamplerWorkspace, TokenProbs, _Cands, _select_cap
from service.sampling.chain import Chain, apply_temperature
from service.sampling.dry import DryTables
from service.sampling.history import TokenHistory
from service.sampling.mirostat import Mirostat
from service.sampling.params import LLAMA_DEFAULT_SEED, SamplingParams

if TYPE_CHECKING:
    from service.sampling.grammar import Constraint


class Sampler:
    """One sequence's sampler: its chain, RNG, token history (penalties, DRY), Mirostat state and grammar."""

    def __init__(
        self,
        params: SamplingParams,
        n_vocab: int,
        *,
        eog_ids: Iterable[int] = (),
        dry_breakers: Sequence[Sequence[int]] | None = None,
        n_ctx: int | None = None,
        workspace: SamplerWorkspace | None = None,
        constraint: Constraint | None = None,
    ):
        """eog_ids: end-of-generation tokens, banned when params.ignore_eos.
        dry_breakers: DRY's sequence breakers as token-id sequences (see dry_breaker_sequences);
        None: no breakers. n_ctx: the context size that -1 means for repeat_last_n and
        dry_penalty_last_n (llama-server's slot context). constraint: this sequence's grammar
        state (the Sampler advances it; give each Sampler its own, see Constraint.clone()).
        """
        if workspace is None:
            workspace = SamplerWorkspace(n_vocab)
        elif workspace.n_vocab != n_vocab:
            raise ValueError(f"workspace: sized for {workspace.n_vocab} tokens, not {n_vocab}")
        if constraint is not None and constraint.n_vocab != n_vocab:
            raise ValueError(f"constraint: compiled for {constraint.n_vocab} tokens, not {n_vocab}")
        self.params = params
        self.n_vocab = n_vocab
        self.constraint = constraint
        self._ws = workspace

        def last_n(name: str, v: int) -> int:
            if v != -1:
                return v
            if n_ctx is None:
                raise ValueError(f"{name}: -1 (the context size) needs n_ctx")
            return n_ctx

        p = params
        repeat_last_n = last_n("repeat_last_n", p.repeat_last_n)
        dry_last_n = last_n("dry_penalty_last_n", p.dry_penalty_last_n)

        # logit_bias + banned eog ids, out-of-range ids dropped (as llama-server does)
        bias = [(t, b) for t, b in p.logit_bias if 0 <= t < n_vocab]
        if p.ignore_eos:
            for t in eog_ids:
                if not 0 <= int(t) < n_vocab:
                    raise ValueError(f"eog_ids: token {t} outside [0, {n_vocab})")
                bias.append((int(t), -math.inf))
        self._bias_tok = np.array([t for t, _ in bias], np.int32)
        self._bias_val = np.array([b for _, b in bias], np.float32)

        penalties_on = repeat_last_n > 0 and not (
            p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0
        )
        dry_on = p.dry_multiplier != 0.0 and p.dry_base >= 1.0 and dry_last_n > 0
        self._history = TokenHistory(max(repeat_last_n if penalties_on else 0, dry_last_n if dry_on else 0), n_vocab)
        dry = DryTables(dry_breakers, n_vocab, p.dry_base, dry_on)
        self._chain = Chain(p, self._history, repeat_last_n, dry_last_n, dry)
        self._mirostat = Mirostat(p.mirostat, p.mirostat_tau, p.mirostat_eta, n_vocab) if p.mirostat else None
        self.top_k_first = self._top_k_first(penalties_on, dry_on)

        self._seed = secrets.randbits(32) if p.seed_is_random else int(p.seed)
        while self._seed == LLAMA_DEFAULT_SEED:
            self._seed = secrets.randbits(32)
        self._rng = np.random.default_rng(self._seed)
        self._last: tuple | None = None
        self._final: tuple[np.ndarray, np.ndarray, int, bool] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        """The seed the RNG was started from (drawn at random when params.seed was -1)."""
        return self._seed

    @property
    def mu(self) -> float:
        """Mirostat's current mu (2 tau when Mirostat is off)."""
        return self._mirostat.mu if self._mirostat else 2.0 * self.params.mirostat_tau

    @property
    def history(self) -> np.ndarray:
        """The accepted tokens the penalties/DRY windows can still see, oldest first."""
        return self._history.tokens()

    def accept(self, token: int, accept_grammar: bool = True) -> None:
        """Record a token of the sequence for penalties and DRY; a generated one also advances the grammar.

        accept_grammar=False is for prompt tokens, which the grammar does not constrain
        (llama.cpp's common_sampler_accept(..., accept_grammar)).
        """
        self._history.append(token)
        if accept_grammar and self.constraint is not None:
            self.constraint.accept(int(token))

    def accept_many(self, tokens: Iterable[int]) -> None:
        """Record prompt tokens (penalties and DRY only; the grammar starts after the prompt)."""
        self._history.extend(tokens)

    def reset(self) -> None:
        """Forget the history, Mirostat state and grammar progress; restart the RNG from the same seed."""
        self._history.clear()
        if self._mirostat:
            self._mirostat.reset()
        if self.constraint is not None:
            self.constraint.reset()
        self._rng = np.random.default_rng(self._seed)

    # -- sampling ------------------------------------------------------------------------

    def _top_k_first(self, penalties_on: bool, dry_on: bool) -> int:
        """K when this chain gives the same token from the K most likely tokens as from the whole
        row (so a GPU can select them and send K instead of n_vocab values); 0 otherwise.
        Needs: no logit bias, grammar or Mirostat, no probabilities to report, and every stage
        before top_k idle for these parameters (top_k then keeps exactly those K)."""
        p = self.params
        if self._bias_tok.size or self.constraint is not None or self._mirostat or p.n_probs > 0:
            return 0
        if "top_k" not in p.samplers or p.top_k <= 0:
            return 0
        idle = {"penalties": not penalties_on, "dry": not dry_on, "top_n_sigma": p.top_n_sigma <= 0.0,
                "typ_p": p.typical_p >= 1.0, "top_p": p.top_p >= 1.0, "min_p": p.min_p <= 0.0,
                "xtc": p.xtc_probability <= 0.0 or p.xtc_threshold > 0.5,
                "temperature": p.temperature == 1.0 and p.dynatemp_range <= 0.0}
        before = p.samplers[: list(p.samplers).index("top_k")]
        return int(p.top_k) if all(idle.get(name, False) for name in before) else 0

    def sample_top(self, ids: np.ndarray, vals: np.ndarray) -> int:
        """sample() from the row's top_k_first most likely tokens, ids int32 and logits float32,
        sorted descending with ties by id (as kernels.sampling.top_k_select orders them)."""
        k = len(ids)
        if not 0 < k <= self.n_vocab or len(vals) != k:
            raise ValueError(f"sample_top: {k} candidates for a vocabulary of {self.n_vocab}")
        ws = self._ws
        ws.ids[0][:k], ws.vals[0][:k] = ids, vals
        c = _Cands(ws, ws.vals[0])
        c.take(0, k, True)
        self._chain.run(c, self._rng)  # top_k keeps all k: the stages after it see what sample() would
        pos = self._draw(c)
        token = int(c.ids[pos])
        self._final = (c.ids, ws.probs, c.n, c.dense)
        self._last = (token, float(ws.probs[pos]), None, None)
        return token

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
        if self.constraint is not None:
            self._apply_constraint(c)
        p = self.params
        if self._mirostat is None:
            self._chain.run(c, self._rng)
            pos = self._draw(c)
        else:
            apply_temperature(c, p.temperature)
            pos = self._mirostat.sample(c, self._draw)
        token = pos if c.dense else int(c.ids[pos])
        prob = float(ws.probs[pos])
        if self.constraint is not None and not self.constraint.allows(token):
            token, prob = self._allowed_fallback(x), 0.0  # every candidate was at -inf
        self._final = (c.ids, ws.probs, c.n, c.dense)
        self._last = (token, prob, None, None)
        if p.n_probs > 0:  # copied out now: the workspace may serve another Sampler next
            k = min(p.n_probs, c.n)
            out_ids, out_p = np.zeros(k, np.int32), np.zeros(k, np.float32)
            K.top_k_select(out_ids, out_p, ws.buf_ids, ws.buf_vals, ws.tmp, c.ids, ws.probs, c.dense, c.n, k, _select_cap(c.n, k), True)
            self._last = (token, prob, out_ids, out_p)
        return token

    def _apply_constraint(self, c: _Cands) -> None:
        """Keep only the tokens the grammar allows: masked in place (-inf) when they are many,
        gathered into a sparse candidate set (token order) when few, so the chain runs on those."""
        mask = self.constraint.fill_mask()
        n = self.n_vocab
        cnt = M.count_allowed(mask, n)
        if cnt == 0:
            raise RuntimeError(f"grammar: no token is allowed ({self.constraint.error or 'the grammar cannot continue'})")
        if 4 * cnt >= n:
            out = c.out()
            M.mask_dense(out, c.vals, mask, n)
            c.vals = out
            return
        ws, b = self._ws, c.free()
        M.gather_allowed(ws.ids[b], ws.vals[b], c.vals, mask, n)
        c.take(b, cnt, False)

    def _allowed_fallback(self, x: np.ndarray) -> int:
        """The allowed token with the highest raw logit: when logit_bias left every allowed token at -inf."""
        mask = self.constraint.fill_mask()
        ids = np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[: self.n_vocab])
        return int(ids[np.argmax(x[ids])])

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
