"""Unigram (`tokenizer.ggml.model` 't5': T5, XLM-RoBERTa), as llama.cpp's UGM tokenizer works.

Normalization walks the text's bytes: a user-defined token's text is kept as it is; else the
longest prefix found in the SentencePiece precompiled charsmap is replaced by its entry; else one
character is copied. Spaces become '▁' (escape_whitespaces), runs of them collapse and a leading one
is added as the flags say. Then a Viterbi pass over the bytes picks the tokenization with the
highest sum of scores (user-defined tokens score 0); a character no token covers becomes the
unknown token, scored min(normal scores) - 10, and runs of unknowns merge into one.

The charsmap blob: a uint32 byte size, that many bytes of XOR-compressed double array (uint32
entries: BASE in bits 10-30 shifted left by 8 when bit 9 is set, LCHECK in bits 0-7 and 31, LEAF
in bit 8, a leaf's VALUE in bits 0-30: the offset of its zero-terminated replacement), then the
replacements.
"""

from __future__ import annotations

import struct

import numpy as np

SPACE = "\u2581".encode()
UNKNOWN_PENALTY = 10.0


class Charsmap:
    def __init__(self, blob: bytes):
        (size,) = struct.unpack_from("<I", blob, 0)
        if size % 4 or 4 + size > len(blob):
            raise ValueError("tokenizer.ggml.precompiled_charsmap: bad double-array size")
        self.xcda = np.frombuffer(blob, "<u4", size // 4, 4).tolist()
        self.repl = blob[4 + size:]

    def _node(self, i: int) -> int:
        if i >= len(self.xcda):
            raise ValueError("tokenizer.ggml.precompiled_charsmap: index out of the double array")
        return self.xcda[i]

    def _base(self, i: int) -> int:
        n = self._node(i)
        return (n >> 10) << ((n & (1 << 9)) >> 6)

    def longest(self, data: bytes, at: int) -> tuple[int, bytes] | None:
        """(bytes consumed, replacement) of the longest prefix of data[at:] in the map, or None."""
        best = None
        node = self._base(0)
        for off in range(at, len(data)):
            c = data[off]
            if c == 0:
                break
            node ^= c
            packed = self._node(node)
            if packed & ((1 << 31) | 0xFF) != c:
                break
            leaf = (packed >> 8) & 1
            node ^= self._base(node)
            if leaf:
                value = self._node(node) & ((1 << 31) - 1)
                end = self.repl.find(b"\0", value)
                if value >= len(self.repl) or end < 0:
                    raise ValueError("tokenizer.ggml.precompiled_charsmap: bad replacement offset")
                best = (off - at + 1, self.repl[value:end])
        return best


def _utf8_len(b: int) -> int:
    return 1 if b < 0x80 else 2 if b >> 5 == 0x6 else 3 if b >> 4 == 0xE else 4 if b >> 3 == 0x1E else 1


class UnigramEncoder:
    def __init__(self, vocab, charsmap: bytes | None):
        from .vocab import ATTR_NORMAL, ATTR_UNUSED, ATTR_USER_DEFINED

        self.unk_id = vocab.special_ids["unk"]
        self.map = Charsmap(charsmap) if charsmap else None
        self.pieces: dict[bytes, int] = {}  # normal, user-defined and unused tokens: text -> id
        self.user: set[bytes] = set()
        self.scores = vocab.scores
        normal = [i for i, a in enumerate(vocab.attrs) if a & ATTR_NORMAL]
        self.unk_score = (float(min(self.scores[normal])) if normal else 3.4e38) - UNKNOWN_PENALTY
        self.user_ids = set()
        for i, (t, a) in enumerate(zip(vocab.tokens, vocab.attrs)):
            if a & (ATTR_NORMAL | ATTR_USER_DEFINED | ATTR_UNUSED):
                self.pieces.setdefault(t.encode(), i)
            if a & ATTR_USER_DEFINED:
                self.user.add(t.encode())
                self.user_ids.add(i)
        self.max_len = max((len(p) for p in self.pieces), default=1)
        self.max_user = max((len(p) for p in self.user), default=0)
        self.space = SPACE if vocab.escape_whitespaces else b" "
        self.prepend = vocab.add_space_prefix and not vocab.ws_suffix
        self.append = vocab.add_space_prefix and vocab.ws_suffix
        self.merge = vocab.remove_extra_whitespaces

    def _prefix(self, data: bytes, at: int) -> tuple[bytes, int]:
        """(normalized bytes, bytes consumed) at data[at:]."""
        for n in range(min(self.max_user, len(data) - at), 0, -1):  # a user-defined token, as it is
            if data[at:at + n] in self.user:
                return data[at:at + n], n
        if self.map is not None:
            hit = self.map.longest(data, at)
            if hit:
                return hit[1], hit[0]
        n = _utf8_len(data[at])
        try:
            data[at:at + n].decode()
        except UnicodeDecodeError:
            return "\ufffd".encode(), 1
        return data[at:at + n], n

    def normalize(self, text: str) -> bytes:
        data, out, at = text.encode(), bytearray(), 0
        prepended = in_word = False
        while at < len(data):
            norm, used = self._prefix(data, at)
            for c in norm:
                if c != 0x20:
                    if not in_word:
                        in_word = True
                        if (self.prepend and not prepended) or self.merge:
                            out += self.space
                            prepended = True
                    out.append(c)
                else:
                    in_word = False
                    if not self.merge:
                        out += self.space
            at += used
        if self.append:
            out += self.space
        return bytes(out)

    def encode(self, text: str) -> list[int]:
        s = self.normalize(text)
        n = len(s)
        if n == 0:
            return []
        best = [(self.unk_id, 0, -np.inf)] * (n + 1)  # per end offset: (token, start, score sum)
        best[0] = (self.unk_id, 0, 0.0)
        at = 0
        while at < n:
            ulen = min(_utf8_len(s[at]), n - at)
            base = best[at][2]
            single = False
            for end in range(at + 1, min(n, at + self.max_len) + 1):
                tid = self.pieces.get(s[at:end])
                if tid is None:
                    continue
                single |= end - at == ulen
                score = base + (0.0 if tid in self.user_ids else float(self.scores[tid]))
                if score > best[end][2]:
                    best[end] = (tid, at, score)
            if not single:
                score = base + self.unk_score
                if score > best[at + ulen][2]:
                    best[at + ulen] = (self.unk_id, at, score)
            at += ulen
        out, end, prev_unk = [], n, False
        while True:
            tid, start, _ = best[end]
            unk = tid == self.unk_id
            if not (prev_unk and unk):
                out.append(tid)
            if start == 0:
                break
            prev_unk, end = unk, start
        return out[::-1]
