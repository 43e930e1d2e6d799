"""Vocabulary built from GGUF metadata alone, following llama.cpp's vocab loader.

Everything the tokenizers need (token texts, scores, attributes, special ids, flags and the
end-of-generation set) is derived here, with llama.cpp's defaults per vocab type when a key is
absent, so that tokenization and detokenization agree with llama.cpp token for token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .bpe import resolve_pre

# GGUF token types (tokenizer.ggml.token_type values).
TYPE_UNDEFINED, TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL = 0, 1, 2, 3
TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = 4, 5, 6

# Attribute bits (llama.cpp keeps attributes as a bit set: a token may gain CONTROL or UNUSED
# on top of its type during loading, so a plain type enum is not enough).
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8

_TYPE_TO_ATTR = {
    TYPE_NORMAL: ATTR_NORMAL, TYPE_UNKNOWN: ATTR_UNKNOWN, TYPE_CONTROL: ATTR_CONTROL,
    TYPE_USER_DEFINED: ATTR_USER_DEFINED, TYPE_UNUSED: ATTR_UNUSED, TYPE_BYTE: ATTR_BYTE,
}

_K = "tokenizer.ggml."

# Texts that mark a token as a candidate for each special role when the metadata does not name
# one. The first candidate present (in this order) wins; llama.cpp walks a hash map here, so its
# pick among several present candidates is arbitrary and only the EOG set is guaranteed.
_AUTO_ROLES: dict[str, tuple[str, ...]] = {
    "eot": ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
            "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
            "<end_of_utterance>"),
    "eom": ("<|eom_id|>",),
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}

# Any token with one of these texts ends generation (and is forced to CONTROL).
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
))

_ROLE_KEYS = {
    "bos": ("bos_token_id",), "eos": ("eos_token_id",), "eot": ("eot_token_id",),
    "eom": ("eom_token_id",), "unk": ("unknown_token_id",), "sep": ("seperator_token_id",),
    "pad": ("padding_token_id",), "mask": ("mask_token_id",),
    "fim_pre": ("fim_pre_token_id", "prefix_token_id"),
    "fim_suf": ("fim_suf_token_id", "suffix_token_id"),
    "fim_mid": ("fim_mid_token_id", "middle_token_id"),
    "fim_pad": ("fim_pad_token_id",), "fim_rep": ("fim_rep_token_id",),
    "fim_sep": ("fim_sep_token_id",),
}


class Vocab:
    """Token table plus the tokenizer flags and special ids llama.cpp derives at load time."""

    def __init__(self, meta: Mapping[str, Any]):
        model = meta.get(_K + "model")
        if model == "gpt2":
            self.vocab_type = "bpe"
            ids = {"bos": 11, "eos": 11, "unk": None}
        elif model == "llama":
            self.vocab_type = "spm"
            ids = {"bos": 1, "eos": 2, "unk": 0}
        elif model == "bert":  # WordPiece (wordpiece.py): [CLS] text [SEP]
            self.vocab_type = "wpm"
            ids = {"bos": 101, "eos": None, "unk": 100, "sep": 102, "pad": 0, "mask": 103}
        elif model == "t5":  # Unigram (unigram.py): T5, XLM-RoBERTa
            self.vocab_type = "ugm"
            ids = {"bos": None, "eos": 1, "unk": 2, "pad": 0}
        else:
            raise ValueError(f"unsupported tokenizer model {model!r} (tokenizer.ggml.model); "
                             "supported: 'gpt2' (byte-level BPE), 'llama' (SentencePiece), 'bert' (WordPiece), 't5' (Unigram)")
        self.model = model
        self.pre = str(meta.get(_K + "pre") or "default")

        tokens = meta.get(_K + "tokens")
        if tokens is None:
            raise ValueError("tokenizer.ggml.tokens is missing from the metadata")
        if all(tokens):  # all() and zip() run in C: 2-3x faster than the comprehensions (49k tokens)
            tokens = list(tokens)
        else:
            tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self.tokens: list[str] = tokens
        n = self.n_vocab = len(tokens)
        self.token_to_id: dict[str, int] = dict(zip(tokens, range(n)))
        if len(self.token_to_id) != n:
            raise ValueError("duplicate token text in tokenizer.ggml.tokens")

        scores = meta.get(_K + "scores")
        self.scores = (np.zeros(n, np.float32) if scores is None
                       else np.asarray(scores, dtype=np.float32)[:n])
        types = meta.get(_K + "token_type")
        types = np.full(n, TYPE_NORMAL) if types is None else np.asarray(types)[:n]
        if len(self.scores) < n or len(types) < n:
            raise ValueError(f"tokenizer.ggml.scores/token_type shorter than the {n} tokens")
        self.attrs: list[int] = _attrs_of(types)

        # Flags, with llama.cpp's per-type defaults; the pre-tokenizer may override some.
        self.merges: list[tuple[str, str]] = []
        self.ignore_merges = False
        if self.vocab_type == "bpe":
            merges = meta.get(_K + "merges")
            if merges is None:
                raise ValueError("tokenizer.ggml.merges is missing for a gpt2 tokenizer")
            self.merges = _split_merges(merges)
            spec = resolve_pre(self.pre)  # raises ValueError for an unsupported pre-tokenizer
            self.pre_type = spec.name
            self.add_space_prefix, self.escape_whitespaces = False, False
            self.clean_spaces, self.ignore_merges = spec.clean_spaces, spec.ignore_merges
            self.add_bos, self.add_eos = spec.add_bos, False
            if spec.no_bos:
                ids["bos"] = None
        elif self.vocab_type == "wpm":
            self.pre_type = "default"
            self.add_space_prefix, self.escape_whitespaces = False, True
            self.clean_spaces, self.add_bos, self.add_eos = True, True, False
        elif self.vocab_type == "ugm":
            self.pre_type = "default"
            self.add_space_prefix, self.escape_whitespaces = False, True
            self.clean_spaces, self.add_bos, self.add_eos = False, False, True
        else:
            self.pre_type = "default"
            self.add_space_prefix, self.escape_whitespaces = True, True
            self.clean_spaces, self.add_bos, self.add_eos = False, True, False
        # BERT's normalizer: strip_accents follows lowercase unless the file says otherwise
        self.lowercase = bool(meta.get(_K + "normalizer.lowercase", False))
        self.strip_accents = bool(meta.get(_K + "normalizer.strip_accents", self.lowercase))
        # Unigram's whitespace handling and SentencePiece normalizer (unigram.py)
        self.remove_extra_whitespaces = bool(meta.get(_K + "remove_extra_whitespaces", False))
        self.ws_suffix = False
        charsmap = meta.get(_K + "precompiled_charsmap")
        self.charsmap = bytes(np.asarray(charsmap, np.uint8)) if charsmap is not None else None
        self.add_space_prefix = bool(meta.get(_K + "add_space_prefix", self.add_space_prefix))

        for role in _ROLE_KEYS:
            ids.setdefault(role, None)
        for role, keys in _ROLE_KEYS.items():
            if ids[role] is not None and ids[role] >= n:
                ids[role] = None  # default id out of range: disabled, as llama.cpp does
            for key in keys:  # as in llama.cpp, a deprecated key read later wins
                v = meta.get(_K + key)
                if v is not None and 0 <= int(v) < n:
                    ids[role] = int(v)
        self.add_bos = bool(meta.get(_K + "add_bos_token", self.add_bos))
        self.add_eos = bool(meta.get(_K + "add_eos_token", self.add_eos))
        # [SEP] between a rerank pair's query and document: WordPiece's default (llama.cpp's add_sep)
        self.add_sep = bool(meta.get(_K + "add_sep_token", self.vocab_type == "wpm"))
        if self.add_bos and ids["bos"] is None:
            raise ValueError("add_bos_token is true but the vocabulary has no BOS token")
        if self.add_eos and ids["eos"] is None:
            raise ValueError("add_eos_token is true but the vocabulary has no EOS token")

        self._detect_roles(ids)
        self.special_ids: dict[str, int | None] = ids
        self.eog_ids: frozenset[int] = self._build_eog(ids)
        self._model_name_rules(str(meta.get("general.name", "")))

        # Texts split out before tokenizing: control, user-defined and unknown tokens, longest
        # first (ties by id, to be deterministic).
        mask = ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN
        cache = np.flatnonzero(np.array(self.attrs, np.int64) & mask).tolist()
        cache.sort(key=lambda i: (-len(tokens[i].encode()), i))
        self.special_cache: list[int] = cache

    # -- load-time rules ------------------------------------------------------------------

    def _force_control(self, tid: int) -> None:
        self.attrs[tid] |= ATTR_CONTROL

    def _detect_roles(self, ids: dict[str, int | None]) -> None:
        """Fill unset EOT/EOM/FIM ids from well-known token texts; mark them CONTROL."""
        for role, texts in _AUTO_ROLES.items():
            if ids[role] is not None:
                continue
            for text in texts:
                tid = self.token_to_id.get(text)
                if tid is not None:
                    ids[role] = tid
                    self._force_control(tid)
                    break
        # Control tokens with "unused" in their text are unused (they never end generation and
        # are still matched as control text).
        for i in np.flatnonzero(np.array(self.attrs, np.int64) & ATTR_CONTROL).tolist():
            if "unused" in self.tokens[i]:
                self.attrs[i] |= ATTR_UNUSED

    def _build_eog(self, ids: dict[str, int | None]) -> frozenset[int]:
        eog = {ids[r] for r in ("fim_pad", "fim_rep", "fim_sep") if ids[r] is not None}
        for text in _EOG_TEXTS:
            tid = self.token_to_id.get(text)
            if tid is not None:
                eog.add(tid)
                self._force_control(tid)
        for text in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):
            tid = self.token_to_id.get(text)  # gpt-oss: always rendered, user-defined
            if tid is not None:
                self.attrs[tid] = ATTR_USER_DEFINED
        eog |= {ids[r] for r in ("eos", "eot", "eom") if ids[r] is not None}
        texts = {self.tokens[i]: i for i in eog}
        # Harmony / solar-open: "<|end|>" only ends a message there, not the generation.
        has_call = "<|call|>" in texts or "<|calls|>" in texts
        if "<|end|>" in texts and has_call and ("<|return|>" in texts or "<|flush|>" in texts):
            eog.discard(texts["<|end|>"])
            self.attrs[texts["<|end|>"]] = ATTR_USER_DEFINED
        # Gemma 4 / paddleocr: "</s>" is an ordinary token when "<|tool_response>" exists.
        if "<|tool_response>" in texts and "</s>" in texts:
            eog.discard(texts["</s>"])
            self.attrs[texts["</s>"]] = ATTR_NORMAL
        return frozenset(eog)

    def _model_name_rules(self, name: str) -> None:
        """Per-model strip attributes that GGUF does not carry (phi-3 right-strips specials)."""
        name = name.lower()
        if "phi-3" in name or "phi3" in name:
            for i, a in enumerate(self.attrs):
                if a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN):
                    self.attrs[i] |= ATTR_RSTRIP
            for text, on in (("</s>", True), ("<unk>", False), ("<s>", False),
                             ("<|endoftext|>", False)):
                tid = self.token_to_id.get(text)
                if tid is not None:
                    self.attrs[tid] = (self.attrs[tid] | ATTR_RSTRIP if on
                                       else self.attrs[tid] & ~ATTR_RSTRIP)

    # -- queries ---------------------------------------------------------------------------

    def byte_token(self, b: int) -> int | None:
        """SPM byte-fallback token for one byte: '<0xXX>', else the raw byte as a token."""
        tid = self.token_to_id.get(f"<0x{b:02X}>")
        if tid is None and b < 0x80:
            tid = self.token_to_id.get(chr(b))
        return tid


_TYPE_LUT = np.array([_TYPE_TO_ATTR.get(t, ATTR_UNDEFINED) for t in range(max(_TYPE_TO_ATTR) + 1)], np.int64)


def _attrs_of(types: np.ndarray) -> list[int]:
    """Attribute bits of each GGUF token type; a table lookup in NumPy for integer types (11 ms
    -> 1 ms for 49k tokens), a dict lookup per token otherwise."""
    if types.dtype.kind not in "iu":
        return [_TYPE_TO_ATTR.get(t, ATTR_UNDEFINED) for t in types.tolist()]
    t = types.astype(np.int64)
    known = (t >= 0) & (t < len(_TYPE_LUT))
    return np.where(known, _TYPE_LUT[np.where(known, t, 0)], ATTR_UNDEFINED).tolist()


def _split_merges(merges: list[str]) -> list[tuple[str, str]]:
    """_split_merge of each merge; str.partition finds the same space whenever the merge does
    not start with one (24 -> 14 ms for SmolLM2's 49k merges)."""
    out = []
    for m in merges:
        a, space, b = m.partition(" ")
        out.append((a, b) if a and space else _split_merge(m))
    return out


def _split_merge(m: str) -> tuple[str, str]:
    # llama.cpp splits at the first space after position 0, so a merge may start with a space.
    pos = m.find(" ", 1)
    if pos < 0:
        return ("", "")
    return (m[:pos], m[pos + 1:])
