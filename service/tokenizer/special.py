"""Splitting text on the literal text of special tokens, before any model-specific tokenization.

llama.cpp takes the special tokens (control, user-defined, unknown) longest first and, for each,
cuts every remaining text fragment at each of its occurrences, left to right. Control and unknown
tokens take part only when parse_special is set; user-defined tokens always do (as in HF
`tokenizers`, where added non-special tokens are always matched). A token with the LSTRIP/RSTRIP
attribute also eats the ASCII whitespace on that side of it.
"""

from __future__ import annotations

import re

from .vocab import ATTR_CONTROL, ATTR_LSTRIP, ATTR_RSTRIP, ATTR_UNKNOWN, Vocab

_ASCII_SPACE = " \t\n\v\f\r"  # C isspace() in the "C" locale: what llama.cpp strips

Fragment = str | int  # raw text, or an already-decided token id


class SpecialSplitter:
    def __init__(self, vocab: Vocab):
        texts, attrs = vocab.tokens, vocab.attrs
        # (text, id, lstrip, rstrip, needs parse_special), in priority order: longest first.
        self._entries = [(texts[i], i, bool(attrs[i] & ATTR_LSTRIP), bool(attrs[i] & ATTR_RSTRIP),
                          bool(attrs[i] & (ATTR_CONTROL | ATTR_UNKNOWN)))
                         for i in vocab.special_cache]
        # A character trie over the token texts finds every token occurring in a text (overlaps
        # included) in one pass over the positions of possible first characters; checking each
        # of thousands of control texts with `in` would cost a full scan apiece.
        self._trie: dict = {}
        for k, e in enumerate(self._entries):
            node = self._trie
            for ch in e[0]:
                node = node.setdefault(ch, {})
            node[""] = k  # "" is never a character, so it marks the end of a token text
        firsts = sorted(self._trie)
        self._first_re = re.compile("[" + "".join(re.escape(c) for c in firsts) + "]") \
            if firsts else None

    def _present(self, text: str) -> set[int]:
        """Indexes of the entries whose text occurs somewhere in `text`."""
        found: set[int] = set()
        if self._first_re is None:
            return found
        trie, n = self._trie, len(text)
        for m in self._first_re.finditer(text):
            p, node = m.start(), trie
            while p < n:
                node = node.get(text[p])
                if node is None:
                    break
                k = node.get("")
                if k is not None:
                    found.add(k)
                p += 1
        return found

    def split(self, text: str, parse_special: bool) -> list[Fragment]:
        if not text:
            return []
        present = self._present(text)
        # Only tokens occurring in the whole text can occur in one of its fragments.
        active = [self._entries[k] for k in sorted(present)  # entries are in priority order
                  if parse_special or not self._entries[k][4]]
        if not active:
            return [text]
        frags: list[Fragment] = [text]
        for tok_text, tid, lstrip, rstrip, _ in active:
            out: list[Fragment] = []
            for frag in frags:
                if isinstance(frag, int) or tok_text not in frag:
                    out.append(frag)
                elif lstrip or rstrip:
                    _split_stripping(frag, tok_text, tid, lstrip, rstrip, out)
                else:
                    parts = frag.split(tok_text)
                    if parts[0]:
                        out.append(parts[0])
                    for part in parts[1:]:
                        out.append(tid)
                        if part:
                            out.append(part)
            frags = out
        return frags


def _split_stripping(frag: str, tok_text: str, tid: int, lstrip: bool, rstrip: bool,
                     out: list[Fragment]) -> None:
    start = 0
    n = len(frag)
    while True:
        pos = frag.find(tok_text, start)
        if pos < 0:
            break
        left = frag[start:pos]
        if lstrip:
            left = left.rstrip(_ASCII_SPACE)
        if left:
            out.append(left)
        out.append(tid)
        start = pos + len(tok_text)
        if rstrip:
            while start < n and frag[start] in _ASCII_SPACE:
                start += 1
    if start < n:
        out.append(frag[start:])
