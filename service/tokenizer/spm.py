"""llama SentencePiece tokenization: greedy BPE over token scores, with byte fallback.

Like llama.cpp: the text (spaces already escaped to U+2581) is split into code points; adjacent
symbols whose concatenation is a token are merged, highest token score first and leftmost first on
ties, until no pair forms a token. A final symbol that is not a token (a single code point missing
from the vocabulary) becomes its UTF-8 bytes as <0xXX> tokens.

Speed: merges never cross a point where no token could span the two neighbouring characters.
Before every '▁' that follows a non-'▁' character X is such a point unless some token contains
"X▁" (the vocabulary is checked once for those X). The text is cut there into word-sized chunks,
each merged on its own with a small heap, and chunk results are cached, so long natural text costs
little more than a dictionary lookup per word. A chunk that is still long (text without spaces,
such as Chinese) is cut further between any two characters that are adjacent in no token at all;
the table of adjacent pairs is built with numpy the first time it is needed.
"""

from __future__ import annotations

import array
import heapq
import re

import numpy as np

from .vocab import Vocab

SPACE = "\u2581"  # '▁', SentencePiece's escaped space
_CACHE_MAX = 200_000
_LONG_CHUNK = 256  # chunks longer than this are cut further at impossible pairs


class SPMEncoder:
    def __init__(self, vocab: Vocab):
        self._vocab = vocab
        self._t2i = vocab.token_to_id
        # an array of C floats, read as Python floats (the same values as the list tolist() gives):
        # 4 bytes a token where a list of floats takes 32 (8 MB of RSS for Gemma 3's 262,144 tokens)
        self._scores = array.array("f", np.ascontiguousarray(vocab.scores, np.float32).tobytes())
        self._unk = vocab.special_ids.get("unk")
        self._cache: dict[str, tuple[int, ...]] = {}
        glue = set()
        for t in vocab.tokens:
            if SPACE in t[1:]:
                glue.update(m for m in re.findall(f"([^{SPACE}]){SPACE}", t))
        excluded = SPACE + "".join(sorted(glue))
        # Zero-width cut points before a '▁' whose left neighbour no token glues to it.
        self._cut = re.compile(f"(?<=[^{re.escape(excluded)}])(?={SPACE})")
        self._pairs: np.ndarray | None = None  # sorted codes of character pairs inside tokens

    def encode(self, text: str) -> list[int]:
        """Tokenize text whose spaces are already escaped (no special tokens inside)."""
        out: list[int] = []
        cache = self._cache
        chunks = self._cut.split(text)
        if any(len(c) > _LONG_CHUNK for c in chunks):
            chunks = [p for c in chunks for p in
                      (self._cut_pairs(c) if len(c) > _LONG_CHUNK else (c,))]
        for chunk in chunks:
            if not chunk:
                continue
            ids = cache.get(chunk)
            if ids is None:
                ids = tuple(self._merge(chunk))
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[chunk] = ids
            out.extend(ids)
        return out

    @staticmethod
    def _pair_codes(s: str) -> np.ndarray:
        cps = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.uint64)
        return (cps[:-1] << np.uint64(21)) | cps[1:]

    def _cut_pairs(self, s: str) -> list[str]:
        """Cut s wherever two neighbouring characters appear next to each other in no token."""
        if self._pairs is None:
            tokens = self._vocab.tokens
            if any("\0" in t for t in tokens):  # NUL is the separator below
                return [s]
            codes = self._pair_codes("\0".join(tokens))
            self._pairs = np.unique(codes[((codes >> np.uint64(21)) != 0)
                                          & ((codes & np.uint64(0x1FFFFF)) != 0)])
        cuts = np.flatnonzero(~np.isin(self._pair_codes(s), self._pairs)) + 1
        bounds = [0, *cuts.tolist(), len(s)]
        return [s[a:b] for a, b in zip(bounds, bounds[1:])]

    def _merge(self, s: str) -> list[int]:
        t2i, scores = self._t2i, self._scores
        n = len(s)
        if n == 1:
            return self._resegment(s)
        # Symbols are spans of s: start offset and length (0 once merged away), linked by nxt/prv.
        start = list(range(n))
        length = [1] * n
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        heap: list[tuple[float, int, int, int]] = []
        for i in range(n - 1):
            tid = t2i.get(s[i:i + 2])
            if tid is not None:
                heap.append((-scores[tid], i, i + 1, 2))
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            _, left, right, size = pop(heap)
            ln, rn = length[left], length[right]
            # Stale entry: one side was merged away or has grown since it was queued.
            if ln == 0 or rn == 0 or ln + rn != size:
                continue
            length[left] = size
            length[right] = 0
            r2 = nxt[right]
            nxt[left] = r2
            if r2 >= 0:
                prv[r2] = left
            p = prv[left]
            if p >= 0:
                sz = length[p] + size
                tid = t2i.get(s[start[p]:start[p] + sz])
                if tid is not None:
                    push(heap, (-scores[tid], p, left, sz))
            if r2 >= 0:
                sz = size + length[r2]
                tid = t2i.get(s[start[left]:start[left] + sz])
                if tid is not None:
                    push(heap, (-scores[tid], left, r2, sz))
        out: list[int] = []
        i = 0
        while i >= 0:
            piece = s[start[i]:start[i] + length[i]]
            tid = t2i.get(piece)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(self._resegment(piece))
            i = nxt[i]
        return out

    def _resegment(self, piece: str) -> list[int]:
        tid = self._t2i.get(piece)
        if tid is not None:
            return [tid]
        out = []
        for b in piece.encode("utf-8"):
            bt = self._vocab.byte_token(b)
            if bt is None:
                bt = self._unk  # llama.cpp would abort here; unk is the gentler fallback
            if bt is not None:
                out.append(bt)
        return out
