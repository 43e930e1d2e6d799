"""WordPiece (`tokenizer.ggml.model` 'bert'), as llama.cpp's WPM tokenizer splits text.

llama.cpp's converter stores a BERT vocabulary with the word-initial pieces prefixed by '▁' and
the '##' continuation marks removed, so one longest-match walk over '▁' + word finds both kinds.
The text is first cut into words: whitespace separates, every punctuation mark, ASCII symbol
and CJK ideograph is a word of its own, control characters vanish; with the normalizer's
`lowercase` (and `strip_accents`, which defaults to it) characters are lowercased and the text is
decomposed (NFD) with its combining marks dropped. A word that cannot be covered from its start
to its end becomes one unknown token (no partial match is kept).
"""

from __future__ import annotations

import unicodedata

SPACE = "\u2581"

# llama.cpp's whitespace set (Unicode White_Space): not str.isspace, which also takes U+001C..1F
_WHITESPACE = frozenset([*range(0x09, 0x0E), *range(0x2000, 0x200B),
                         0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _cjk(cp: int) -> bool:
    return any(a <= cp <= b for a, b in _CJK)


def _lower(ch: str) -> str:
    """Unicode's simple (one code point) lowercase mapping, which llama.cpp's table holds; Python's
    full mapping may give two ('İ' -> 'i' + U+0307), of which the first is the simple one."""
    low = ch.lower()
    return low[0] if low else ch


def words(text: str, lowercase: bool, strip_accents: bool) -> list[str]:
    """The words llama.cpp's WPM pre-processing cuts `text` into (empty ones dropped)."""
    if strip_accents:
        text = unicodedata.normalize("NFD", text)
    out: list[str] = []
    cur: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp in _WHITESPACE:
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cat = unicodedata.category(ch)
        if cp == 0 or cp == 0xFFFD or (cat[0] == "C" and cat != "Cn"):  # Cn: unassigned, no flags there
            continue
        if strip_accents and cat[0] == "M":
            continue
        s = _lower(ch) if lowercase else ch
        if cat[0] == "P" or (cp < 0x7F and cat[0] == "S") or _cjk(cp):
            if cur:
                out.append("".join(cur))
                cur = []
            out.append(s)
        else:
            cur.append(s)
    if cur:
        out.append("".join(cur))
    return out


class WordPieceEncoder:
    def __init__(self, token_to_id: dict[str, int], unk_id: int | None, lowercase: bool, strip_accents: bool):
        self.token_to_id, self.unk_id = token_to_id, unk_id
        self.lowercase, self.strip_accents = lowercase, strip_accents
        # longest match in characters: a token's length in code points bounds the search
        self.max_len = max((len(t) for t in token_to_id), default=1)

    def encode_word(self, word: str) -> list[int]:
        w = SPACE + word
        n, i, out = len(w), 0, []
        get = self.token_to_id.get
        while i < n:
            for j in range(min(n, i + self.max_len), i, -1):
                tid = get(w[i:j])
                if tid is not None:
                    out.append(tid)
                    i = j
                    break
            else:  # no piece starts here: the whole word is unknown
                return [] if self.unk_id is None else [self.unk_id]
        return out

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for w in words(text, self.lowercase, self.strip_accents):
            out.extend(self.encode_word(w))
        return out
