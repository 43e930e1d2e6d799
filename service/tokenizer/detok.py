"""Token pieces, detokenization and a streaming UTF-8 decoder, following llama.cpp.

A piece is the bytes a token stands for: byte-level BPE tokens map each character back to a byte
through the GPT-2 table; SentencePiece tokens turn '▁' into ' '; byte tokens (<0xXX>) are that
byte. Control and unknown tokens show their text only when asked for special tokens; user-defined
tokens always show their text verbatim. Pieces may hold part of a UTF-8 character, so text is
assembled from bytes and decoded at the end (or incrementally by StreamDecoder).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

from .vocab import (ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_USER_DEFINED,
                    Vocab)


def gpt2_byte_table() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


_CHAR_TO_BYTE = {c: b for b, c in gpt2_byte_table().items()}


def _byte_level_decode(text: str) -> bytes:
    out = bytearray()
    for ch in text:
        b = _CHAR_TO_BYTE.get(ch)
        if b is not None:
            out.append(b)
        else:  # not a byte-level character: llama.cpp writes a visible marker instead
            utf8 = ch.encode("utf-8")
            out += b"[UNK_BYTE_0x" + utf8.hex().encode() + text.encode("utf-8") + b"]"
    return bytes(out)


class Pieces:
    """token id -> piece bytes, computed on first use and cached (special=True form)."""

    def __init__(self, vocab: Vocab):
        self._vocab = vocab
        self._cache: list[bytes | None] = [None] * vocab.n_vocab

    def get(self, tid: int, special: bool = True) -> bytes:
        attrs = self._vocab.attrs
        if not 0 <= tid < len(attrs):
            raise IndexError(f"token id {tid} out of range (n_vocab={len(attrs)})")
        if not special and attrs[tid] & (ATTR_CONTROL | ATTR_UNKNOWN):
            return b""
        piece = self._cache[tid]
        if piece is None:
            piece = self._cache[tid] = self._compute(tid)
        return piece

    def _compute(self, tid: int) -> bytes:
        v = self._vocab
        attr, text = v.attrs[tid], v.tokens[tid]
        if attr & (ATTR_CONTROL | ATTR_UNKNOWN | ATTR_USER_DEFINED):
            return text.encode("utf-8")
        if attr & ATTR_NORMAL:
            if v.escape_whitespaces:  # SentencePiece
                return text.replace("\u2581", " ").encode("utf-8")
            return _byte_level_decode(text)
        if attr & ATTR_BYTE:
            return bytes([int(text[3:5], 16)])
        return b""  # unused / undefined tokens render as nothing


def detokenize_bytes(vocab: Vocab, pieces: Pieces, ids: Iterable[int], special: bool,
                     remove_special: bool) -> bytes:
    ids = list(ids)
    remove_space = vocab.add_space_prefix
    bos, eos = vocab.special_ids["bos"], vocab.special_ids["eos"]
    if remove_special and vocab.add_bos and ids and ids[0] == bos:
        remove_space = False
        ids = ids[1:]
    if remove_special and vocab.add_eos and ids and ids[-1] == eos:
        ids = ids[:-1]
    out = bytearray()
    for k, tid in enumerate(ids):
        piece = pieces.get(tid, special)
        if k == 0 and remove_space and piece.startswith(b" "):
            piece = piece[1:]  # the space SentencePiece put before the first word
        out += piece
    if vocab.clean_spaces:
        out = _clean_spaces(out)
    return bytes(out)


def _clean_spaces(t: bytearray) -> bytearray:
    """HF's clean_up_tokenization_spaces, as llama.cpp applies it for BPE vocabularies."""
    # " ?", " !", " .", " ," lose the space.
    r = bytearray()
    for i, x in enumerate(t):
        if i > 0 and r and t[i - 1] == 0x20 and x in b"?!.," and r[-1] == 0x20:
            r.pop()
        r.append(x)
    # " ' " loses both spaces around a lone apostrophe. A space eaten on the right no longer
    # counts as the left space of what follows (llama.cpp overwrites it with NUL).
    t, r, i = bytearray(r), bytearray(), 0
    while i < len(t):
        x = t[i]
        if x == 0x27 and 0 < i < len(t) - 1 and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            r.pop()
            t[i + 1] = 0
            r.append(x)
            i += 2
            continue
        r.append(x)
        i += 1
    # " 's", " 'm", " 're", " 've" lose the space.
    t, r = r, bytearray()
    for i, x in enumerate(t):
        if i > 0 and t[i - 1] == 0x20 and x == 0x27 and i + 1 < len(t):
            x1 = t[i + 1]
            x2 = t[i + 2] if i + 2 < len(t) else None
            if x1 in b"sm" or (x2 is not None and (x1, x2) in ((0x72, 0x65), (0x76, 0x65))):
                if r:
                    r.pop()
        r.append(x)
    return r


class StreamDecoder:
    """Feed token ids one at a time; get back only complete UTF-8 text.

    Bytes of a character split across tokens are held until the character is complete, so no
    replacement character is ever produced for valid output; bytes that can never form a valid
    character become U+FFFD. Call flush() at the end of the stream.
    """

    def __init__(self, tokenizer, special: bool = True):
        self._pieces = tokenizer.pieces
        self._special = special
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, tid: int) -> str:
        return self._dec.decode(self._pieces.get(tid, self._special))

    def feed_many(self, ids: Iterable[int]) -> str:
        return "".join(self.feed(t) for t in ids)

    @property
    def pending(self) -> bytes:
        """Bytes held back because they end in an incomplete character."""
        return self._dec.getstate()[0]

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)
