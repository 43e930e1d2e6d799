"""Tokenizer built from GGUF metadata alone, reproducing llama.cpp's tokenization exactly.

    tok = Tokenizer.from_metadata(read_gguf(path).metadata)
    ids = tok.tokenize("Hello", add_special=True, parse_special=False)
    text = tok.detokenize(ids)

Supports `tokenizer.ggml.model` 'gpt2' (byte-level BPE, see bpe.py for the pre-tokenizers),
'llama' (SentencePiece BPE with byte fallback, see spm.py), 'bert' (WordPiece, wordpiece.py) and 't5'
(Unigram, unigram.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .bpe import BPEEncoder
from .detok import Pieces, StreamDecoder, detokenize_bytes
from .special import SpecialSplitter
from .spm import SPACE, SPMEncoder
from .unigram import UnigramEncoder
from .wordpiece import WordPieceEncoder
from .vocab import (ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_UNUSED,
                    ATTR_USER_DEFINED, Vocab)

__all__ = ["Tokenizer", "StreamDecoder", "Vocab"]

# Lone surrogates cannot be UTF-8 encoded; llama.cpp would see invalid bytes and use U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")


class Tokenizer:
    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.vocab_type: str = vocab.vocab_type
        self.n_vocab: int = vocab.n_vocab
        ids = vocab.special_ids
        self.bos_id, self.eos_id, self.eot_id = ids["bos"], ids["eos"], ids["eot"]
        self.eom_id, self.unk_id, self.pad_id = ids["eom"], ids["unk"], ids["pad"]
        self.sep_id, self.mask_id = ids["sep"], ids["mask"]
        self.fim_pre_id, self.fim_suf_id = ids["fim_pre"], ids["fim_suf"]
        self.fim_mid_id, self.fim_pad_id = ids["fim_mid"], ids["fim_pad"]
        self.fim_rep_id, self.fim_sep_id = ids["fim_rep"], ids["fim_sep"]
        self.add_bos: bool = vocab.add_bos
        self.add_eos: bool = vocab.add_eos
        self.add_space_prefix: bool = vocab.add_space_prefix
        self.eog_ids: frozenset[int] = vocab.eog_ids
        self.pieces = Pieces(vocab)
        self._splitter = SpecialSplitter(vocab)
        if vocab.vocab_type == "bpe":
            self._bpe = BPEEncoder(vocab.tokens, vocab.token_to_id, vocab.merges,
                                   vocab.pre_type, vocab.ignore_merges)
        elif vocab.vocab_type == "wpm":
            self._wpm = WordPieceEncoder(vocab.token_to_id, ids["unk"], vocab.lowercase, vocab.strip_accents)
        elif vocab.vocab_type == "ugm":
            self._ugm = UnigramEncoder(vocab, vocab.charsmap)
        else:
            self._spm = SPMEncoder(vocab)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Tokenizer:
        """Build from a GGUF metadata mapping; ValueError for an unsupported model/pre."""
        return cls(Vocab(meta))

    # -- tokenization -----------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        if _SURROGATE.search(text):
            text = _SURROGATE.sub("\ufffd", text)
        frags = self._splitter.split(text, parse_special)
        if self.vocab_type == "wpm":  # llama.cpp: [CLS] (bos) ... [SEP] with add_special, whatever add_bos says
            out = [self.bos_id] if add_special else []
            for frag in frags:
                out.extend([frag] if isinstance(frag, int) else self._wpm.encode(frag))
            return out + [self.sep_id] if add_special else out
        if self.vocab_type == "ugm":  # llama.cpp: BOS and EOS as the flags say, no space prefix of its own
            out = [self.bos_id] if add_special and self.add_bos else []
            for frag in frags:
                out.extend([frag] if isinstance(frag, int) else self._ugm.encode(frag))
            return out + [self.eos_id] if add_special and self.add_eos else out
        out: list[int] = []
        if add_special and self.add_bos:
            out.append(self.bos_id)
        if self.vocab_type == "spm":
            prev_special = True  # the first text fragment gets the space prefix too
            for frag in frags:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                    continue
                if self.add_space_prefix and prev_special:
                    frag = " " + frag
                out.extend(self._spm.encode(frag.replace(" ", SPACE)))
                prev_special = False
        else:
            for frag in frags:
                out.extend([frag] if isinstance(frag, int) else self._bpe.encode(frag))
        if add_special and self.add_eos:
            out.append(self.eos_id)
        return out

    __call__ = tokenize

    # -- pieces and text ----------------------------------------------------------------------

    def token_to_piece(self, tid: int, special: bool = True) -> bytes:
        """The bytes token `tid` stands for (may be part of a UTF-8 character)."""
        return self.pieces.get(tid, special)

    def detokenize_bytes(self, ids: Iterable[int], skip_special: bool = False,
                         remove_special: bool = False) -> bytes:
        ids = [t for t in ids if t >= 0]  # image rows of a multimodal prompt (placeholder ids < 0) have no text
        return detokenize_bytes(self.vocab, self.pieces, ids, not skip_special, remove_special)

    def detokenize(self, ids: Iterable[int], skip_special: bool = False,
                   remove_special: bool = False) -> str:
        """Text of `ids` as llama.cpp's llama_detokenize gives it.

        skip_special: control/unknown tokens render as nothing (llama.cpp unparse_special=False).
        remove_special: drop a leading BOS / trailing EOS the model adds itself.
        """
        return self.detokenize_bytes(ids, skip_special, remove_special).decode(
            "utf-8", errors="replace")

    def stream_decoder(self, special: bool = True) -> StreamDecoder:
        return StreamDecoder(self, special)

    # -- token queries ------------------------------------------------------------------------

    def token_text(self, tid: int) -> str:
        return self.vocab.tokens[tid]

    def token_id(self, text: str) -> int | None:
        return self.vocab.token_to_id.get(text)

    def score(self, tid: int) -> float:
        return float(self.vocab.scores[tid])

    def is_eog(self, tid: int) -> bool:
        return tid in self.eog_ids

    def is_control(self, tid: int) -> bool:
        return bool(self.vocab.attrs[tid] & ATTR_CONTROL)

    def is_normal(self, tid: int) -> bool:
        return bool(self.vocab.attrs[tid] & ATTR_NORMAL)

    def is_user_defined(self, tid: int) -> bool:
        return bool(self.vocab.attrs[tid] & ATTR_USER_DEFINED)

    def is_unknown(self, tid: int) -> bool:
        return bool(self.vocab.attrs[tid] & ATTR_UNKNOWN)

    def is_byte(self, tid: int) -> bool:
        return bool(self.vocab.attrs[tid] & ATTR_BYTE)

    def is_unused(self, tid: int) -> bool:
        return bool(self.vocab.attrs[tid] & ATTR_UNUSED)

    def is_special(self, tid: int) -> bool:
        """Control, user-defined or unknown: matched as literal text when parsing specials."""
        return bool(self.vocab.attrs[tid] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
