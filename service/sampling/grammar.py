"""Structured output: grammars and JSON schemas compiled by llguidance into per-sequence token masks.

    compiler = GrammarCompiler(model.tokenizer)            # once per model (~0.1 s; ~1 s at 262k tokens)
    constraint = compiler.compile(json_schema=schema)      # per request; GrammarError if invalid
    sampler = Sampler(params, n_vocab, constraint=constraint, ...)

llguidance is the library llama.cpp itself can use for this. It sees our tokenizer as token
byte strings (pieces; control tokens marked with a 0xFF prefix as llama.cpp's binding does,
so grammar text can never produce them) plus a tokenize function, and computes, per step,
a bitmask of the tokens that keep the output inside the grammar. End-of-generation tokens
are in the mask only where the grammar may end; once it cannot continue, only they are.

Grammars are llama.cpp's GBNF (converted by llguidance) or llguidance's Lark dialect (text
starting with `%llguidance` or a `start:` rule, as llama.cpp accepts with llguidance). JSON
schemas follow llama.cpp's converter where the two differ: an empty schema means "any JSON
object", keywords llguidance does not implement are ignored rather than refused, and
whitespace between tokens is at most one space or one or two newlines plus up to 20 spaces
or tabs (so a small model cannot wander into endless whitespace).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any

import llguidance
import numpy as np
from llguidance.gbnf_to_lark import any_to_lark

# llama.cpp's json-schema-to-grammar SPACE_RULE, as a regex for llguidance's JSON compiler.
_JSON_OPTIONS = {"whitespace_pattern": r"(?: |\n{1,2}[ \t]{0,20})?", "lenient": True}
_CACHE_SIZE = 32  # compiled grammars kept per compiler (a request often repeats its schema)


class GrammarError(ValueError):
    """An invalid grammar or schema: `field` is the request field, `detail` the parser's message."""

    def __init__(self, field: str, detail: str):
        self.field, self.detail = field, detail.strip()
        super().__init__(f"{field}: {self.detail}")


class _TokenSource(llguidance.TokenizerWrapper):
    """Our tokenizer in the shape llguidance.LLTokenizer reads (TokenizerWrapper's attributes)."""

    def __init__(self, tokenizer: Any, eog: list[int]):  # no super().__init__: it probes a foreign tokenizer
        n = tokenizer.n_vocab
        self.eos_token_id = eog[0]
        self.bos_token_id = tokenizer.bos_id if 0 <= tokenizer.bos_id < n else None
        self.special_token_ids = [t for t in range(n) if tokenizer.is_control(t)]
        special = set(self.special_token_ids)
        tokens = []
        for t in range(n):
            piece = tokenizer.token_to_piece(t)
            if t in special or (tokenizer.is_user_defined(t) and piece.startswith(b"<") and piece.endswith(b">")):
                piece = b"\xff" + piece  # a special token: only a grammar naming it may produce it
            tokens.append(piece)
        self.tokens = tokens
        self.is_tokenizer_wrapper = True
        self._tokenizer = tokenizer

    def __call__(self, text: str) -> list[int]:
        return self._tokenizer.tokenize(text, add_special=False, parse_special=False)


class Constraint:
    """One sequence's progress through a compiled grammar: the allowed-token mask, and the tokens accepted so far.

    fill_mask() computes the mask for the current state once and reuses it until accept()
    or reset() moves the state. Not thread-safe: one sequence, one thread at a time.
    """

    def __init__(self, matcher: llguidance.LLMatcher, n_vocab: int, eog_ids: tuple[int, ...], field: str):
        self._m = matcher
        self.n_vocab = n_vocab
        self.eog_ids = eog_ids
        self.field = field  # "grammar" or "json_schema": what it was compiled from
        self._mask = np.zeros((n_vocab + 31) // 32, np.int32)  # bit t & 31 of word t >> 5: token t allowed
        self._fresh = False
        self.masks_computed = 0  # how many times the mask was computed (once per step is the contract)

    def fill_mask(self) -> np.ndarray:
        """The allowed tokens now, as llguidance's bitmask (int32 words); read-only, valid until accept()/reset()."""
        if not self._fresh:
            self._m.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
            self._fresh = True
            self.masks_computed += 1
        return self._mask

    def allows(self, token: int) -> bool:
        m = self.fill_mask()
        return 0 <= token < self.n_vocab and bool((int(m[token >> 5]) >> (token & 31)) & 1)

    def accept(self, token: int) -> None:
        """Advance past a generated token; it must be allowed (RuntimeError otherwise: the sampler never draws one that is not)."""
        if not self._m.consume_token(int(token)):
            raise RuntimeError(f"grammar: token {token} rejected: {self._m.get_error()}")
        self._fresh = False

    @property
    def is_finished(self) -> bool:
        """The grammar accepts no more tokens: only end-of-generation is allowed (or it was produced)."""
        return self._m.is_stopped()

    @property
    def is_accepting(self) -> bool:
        """The output so far is complete: generation may end here."""
        return self._m.is_accepting()

    @property
    def error(self) -> str:
        return self._m.get_error()

    def reset(self) -> None:
        """Back to the start of the grammar."""
        self._m.reset()
        self._fresh = False

    def clone(self) -> Constraint:
        """An independent copy in the same state (for another sequence of the same request)."""
        return Constraint(self._m.deep_copy(), self.n_vocab, self.eog_ids, self.field)


class GrammarCompiler:
    """Compiles grammars and JSON schemas for one model's tokenizer; build once per model, use from any thread."""

    def __init__(self, tokenizer: Any):
        """tokenizer: service.tokenizer.Tokenizer (pieces as bytes, control flags, eog ids, tokenize)."""
        n = tokenizer.n_vocab
        eog = sorted(t for t in tokenizer.eog_ids if 0 <= t < n)
        if not eog and 0 <= tokenizer.eos_id < n:
            eog = [tokenizer.eos_id]
        if not eog:
            raise ValueError("tokenizer: no end-of-generation token, so no grammar could end")
        self.n_vocab = n
        self.eog_ids = tuple(eog)
        self.lltokenizer = llguidance.LLTokenizer(_TokenSource(tokenizer, eog), n_vocab=n, eos_token=eog)
        self._limits = llguidance.LLParserLimits(verbose_errors=False)  # errors name no parser state
        self._cache: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, grammar: str | None = None, json_schema: dict | None = None) -> Constraint:
        """A fresh Constraint for a GBNF/Lark grammar or a JSON schema (exactly one); GrammarError if invalid."""
        if (grammar is None) == (json_schema is None):
            raise ValueError("compile: give exactly one of grammar and json_schema")
        if grammar is not None:
            field = "grammar"
            if not isinstance(grammar, str):
                raise GrammarError(field, f"expected a string, got {type(grammar).__name__}")
            try:
                spec = llguidance.LLMatcher.grammar_from_lark(any_to_lark(grammar))
            except Exception as e:  # the GBNF converter raises bare Exceptions with the parser's message
                raise GrammarError(field, str(e)) from None
        else:
            field = "json_schema"
            if not isinstance(json_schema, dict):
                raise GrammarError(field, f"expected a JSON object, got {type(json_schema).__name__}")
            schema = json_schema or {"type": "object"}  # llama.cpp: an empty schema is any object
            try:
                spec = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=_JSON_OPTIONS)
            except (ValueError, TypeError) as e:
                raise GrammarError(field, str(e)) from None
        return Constraint(self._matcher(spec, field), self.n_vocab, self.eog_ids, field)

    def _matcher(self, spec: str, field: str) -> llguidance.LLMatcher:
        with self._lock:
            m = self._cache.get(spec)
            if m is not None:
                self._cache.move_to_end(spec)
                return m.deep_copy()
        m = llguidance.LLMatcher(self.lltokenizer, spec, log_level=0, limits=self._limits)
        if m.is_error():
            raise GrammarError(field, m.get_error())
        with self._lock:
            self._cache[spec] = m
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return m.deep_copy()


def fill_masks(constraints: list[Constraint], executor: llguidance.LLExecutor | None = None) -> None:
    """Compute the masks of several sequences' constraints in parallel (llguidance's thread pool), before their samplers run."""
    todo = [c for c in constraints if not c._fresh]
    if len(todo) < 2:
        for c in todo:
            c.fill_mask()
        return
    ex = executor or _executor()
    n_words = todo[0]._mask.shape[0]
    if any(c._mask.shape[0] != n_words for c in todo):
        raise ValueError("fill_masks: constraints of different vocabularies")
    out = np.zeros((len(todo), n_words), np.int32)
    ex.unsafe_compute_mask_ptr([(c._m, i) for i, c in enumerate(todo)], out.ctypes.data, n_words * 4, len(todo))
    for i, c in enumerate(todo):
        c._mask[:] = out[i]
        c._fresh = True
        c.masks_computed += 1


@functools.cache
def _executor() -> llguidance.LLExecutor:
    return llguidance.LLExecutor()
