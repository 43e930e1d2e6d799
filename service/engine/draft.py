"""Speculative decoding with a draft model (llama-server's --spec-type draft-simple with -md FILE).

A second, smaller model with the same vocabulary guesses the next tokens; the main model checks
them in one batched forward pass (speculative.verify, shared with the n-gram drafts), so that the
output is the one of plain decoding while each accepted token saves the main model a step.

Drafting (DraftModel.draft), per slot, as llama-server's draft-simple: the draft model reads the
slot's tokens (its own KV cache, one sequence per slot, the same context as a slot), then picks
its most likely next token again and again: it stops before a token whose probability (among its
10 most likely, as llama-server's top-k 10 draft sampler sees them) is under --spec-draft-p-min,
after --spec-draft-n-max tokens or the slot's own limit, and a draft shorter than
--spec-draft-n-min is dropped.

Keeping in step: the draft's cache holds a token list of its own (`held`). Before each draft it
is cut back to what it shares with the slot's tokens and the rest is read again, so whatever
changed the slot's tokens since (rejected draft tokens, a new prompt, the prompt cache or a slot
restore, a context shift, the model asleep and woken) costs a re-read of what differs, never a
wrong draft. A slot whose tokens hold image rows (negative ids) gets no draft.

Vocabularies: as llama.cpp, a draft model is refused unless its vocabulary matches the main one:
the same type, the same BOS/EOS rules, sizes within 128 of each other, and the same text for every
token from id 5 on (vocab_mismatch). llama-server logs the refusal and serves without speculation;
llamajit refuses to start (service.api.state reports it and exits 1).
"""

from __future__ import annotations

import numpy as np
import structlog

from service.engine.slot import common_prefix
from service.engine.speculative import DRAFT_SIMPLE

log = structlog.get_logger("llamajit.engine")

MAX_VOCAB_DIFF = 128  # llama.cpp's most tokens by which the two vocabularies' sizes may differ
CHECK_FROM = 5  # ... and the first token id whose text must match
TOP_K = 10  # the draft sampler's candidates: a token's probability is taken among these


def vocab_mismatch(target, draft) -> str | None:
    """Why the draft tokenizer cannot draft for the target one (llama.cpp's checks), or None."""
    if target.vocab_type != draft.vocab_type:
        return f"vocabulary type {draft.vocab_type}, the model's is {target.vocab_type}"
    for what, flag, tok in (("BOS", "add_bos", "bos_id"), ("EOS", "add_eos", "eos_id")):
        a, b = getattr(target, flag), getattr(draft, flag)
        if a != b or (a and getattr(target, tok) != getattr(draft, tok)):
            return (f"{what}: add {b}, token {getattr(draft, tok)}; the model's: add {a}, token "
                    f"{getattr(target, tok)}")
    if abs(target.n_vocab - draft.n_vocab) > MAX_VOCAB_DIFF:
        return f"{draft.n_vocab} tokens, the model has {target.n_vocab} (at most {MAX_VOCAB_DIFF} apart)"
    for i in range(CHECK_FROM, min(target.n_vocab, draft.n_vocab)):
        if target.token_text(i) != draft.token_text(i):
            return f"token {i} is {draft.token_text(i)!r}, the model's is {target.token_text(i)!r}"
    return None


def top_token(row: np.ndarray) -> tuple[int, float]:
    """(the most likely token, its probability among the TOP_K most likely) of one logits row."""
    tok = int(np.argmax(row))
    top = row[np.argpartition(row, -TOP_K)[-TOP_K:]] if len(row) > TOP_K else row
    return tok, float(1.0 / np.exp(top.astype(np.float64) - float(row[tok])).sum())


class DraftModel:
    """A draft model's drafts for each slot (one KV sequence per slot); the engine thread only."""

    def __init__(self, model, n_max: int, n_min: int, p_min: float):
        self.model = model  # service.model.model.Model
        self.n_max, self.n_min, self.p_min = n_max, n_min, p_min
        self.held: list[list[int]] = [[] for _ in range(model.n_seq)]  # tokens in each sequence's cache

    def draft(self, seq: int, tokens: list[int], n_max: int) -> list[int]:
        """The draft after a slot's tokens (those in its cache, then the last sampled one), at most
        n_max (the slot's limit) and --spec-draft-n-max tokens; [] when shorter than -n-min."""
        m = self.model
        n_max = min(n_max, self.n_max, m.n_ctx - len(tokens) + 1)  # the draft's own context holds the rest
        if n_max <= 0 or not tokens or min(tokens) < 0:
            return []
        row = self._read(seq, tokens)
        out: list[int] = []
        while True:
            tok, p = top_token(row)
            if p < self.p_min:  # only confident guesses: a rejected token costs a verified row
                break
            out.append(tok)
            if len(out) >= n_max:
                break
            row = m.eval(seq, [tok])
            self.held[seq].append(tok)
        return out if len(out) >= self.n_min else []

    def forget(self) -> None:
        """Every sequence's cache is empty (the model was reloaded after a sleep)."""
        for held in self.held:
            held.clear()

    def _read(self, seq: int, tokens: list[int]) -> np.ndarray:
        """Bring the sequence's cache to `tokens` (cut back to the shared prefix, the rest read
        again; the last token is always read, for its logits); the logits after them."""
        cache = self.model.cache
        held = self.held[seq]
        keep = min(common_prefix(held, tokens), len(tokens) - 1, int(cache.length[seq]))
        cache.keep(seq, keep)
        del held[keep:]
        try:
            row = self.model.eval(seq, tokens[keep:])
        except BaseException:  # how much got in is unknown: start this sequence over next time
            cache.clear(seq)
            held.clear()
            raise
        held.extend(tokens[keep:])
        return row


def load_draft(args, target, n_slots: int, warmup: bool) -> DraftModel | None:
    """The draft model of -md for --spec-type draft-simple (None without that type); raises
    ModelError for a missing or unusable draft model, or a vocabulary that does not match."""
    from service.model.config import ModelError
    from service.model.model import Model

    path = args.spec_draft_model
    if DRAFT_SIMPLE not in args.spec_type:
        if path:  # llama-server loads it and drafts nothing with it
            log.warning("-md: the draft model is not used without --spec-type draft-simple: not loaded", model=path)
        return None
    if not path:
        raise ModelError("--spec-type draft-simple needs a draft model: give one with -md/--spec-draft-model")
    m = Model(path, n_ctx=target.n_ctx, n_seq=n_slots, max_batch=target.max_batch,
              n_gpu_layers=args.spec_draft_ngl, device=args.device,
              cache_types=(args.spec_draft_type_k, args.spec_draft_type_v))  # -ctkd / -ctvd
    if not m.cfg.causal:
        raise ModelError(f"draft model {path}: {m.cfg.arch} is an encoder; a draft model must generate text")
    why = vocab_mismatch(target.tokenizer, m.tokenizer)
    if why:
        raise ModelError(f"draft model {path} cannot draft for {target.path}: the vocabularies differ ({why}); "
                         "speculative decoding needs a draft model with the model's vocabulary")
    if warmup:  # its kernels compiled (or loaded from Numba's cache) before the server is ready
        m.eval(0, [t % m.cfg.n_vocab for t in range(1, min(16, m.n_ctx - 1) + 1)])
        m.eval(0, [1])
        m.cache.clear(0)
    p = m.placement
    log.info("draft model loaded", model=path, arch=m.cfg.arch, n_params=m.n_params, n_max=args.spec_draft_n_max,
             n_min=args.spec_draft_n_min, p_min=args.spec_draft_p_min, n_gpu_layers=p.n_gpu,
             cache_type_k=m.cache.type_names[0], cache_type_v=m.cache.type_names[1],  # what the cache holds
             device=p.device or "CPU")
    return DraftModel(m, args.spec_draft_n_max, args.spec_draft_n_min, args.spec_draft_p_min)
