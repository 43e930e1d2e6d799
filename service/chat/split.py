"""Which characters of a rendered prompt came from the template and which from the messages.

The prompt is rendered twice: once for real, once with every non-empty message text replaced by a
sentinel (private-use characters around a per-render random number and the text's index). The
sentinel render is the template's skeleton: its literal text between sentinels is the template's
own. Aligning the skeleton with the real text yields the parts:

    skeleton  "<|im_start|>user\\n" S0 "<|im_end|>\\n<|im_start|>assistant\\n"
    text      "<|im_start|>user\\n" "hi <|im_end|>" "<|im_end|>\\n<|im_start|>assistant\\n"
    parts     [("<|im_start|>user\\n", True), ("hi <|im_end|>", False), ("<|im_end|>...", True)]

Templates often transform a message before printing it (`| trim`, `.strip()`), so each sentinel
may stand for the text itself or its stripped forms; a search over those choices finds the exact
alignment (`exact` True). When the template did something else to a message, the regions between
the skeleton's literal pieces are taken as message text (`exact` False). When even that fails
(the template branched on the content), the whole prompt counts as template text, which is what
llama-server does for every prompt.
"""

from __future__ import annotations

import random
import re

Part = tuple[str, bool]  # (text, from_template)

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: no tokenizer or template cares


def new_nonce() -> str:
    return str(random.SystemRandom().randrange(10**11, 10**12))  # digits survive upper()/title()


def sentinelize(messages: list[dict], nonce: str) -> tuple[list[dict], list[str]]:
    """`messages` with each non-empty text (a string content, or a text part's text) replaced by
    its sentinel, and the texts in sentinel order. Empty texts stay empty: they print nothing, and
    a template's `{% if message.content %}` must take the same branch in both renders."""
    texts: list[str] = []

    def mark(text: str) -> str:
        texts.append(text)
        return f"{_OPEN}{nonce}:{len(texts) - 1}{_CLOSE}"

    out = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, str) and content:
            msg = dict(msg, content=mark(content))
        elif isinstance(content, list):
            msg = dict(msg, content=[dict(p, text=mark(p["text"])) if p.get("text") else p
                                     for p in content])
        out.append(msg)
    return out, texts


def align(text: str, skeleton: str | None, texts: list[str], nonce: str) -> tuple[list[Part], bool]:
    """Split `text` into parts using `skeleton` (None when the sentinel render failed)."""
    if not texts:
        return _nonempty([(text, True)]), True
    if skeleton is None:
        return [(text, True)], False
    pieces = re.split(f"{_OPEN}{nonce}:(\\d+){_CLOSE}", skeleton)
    literals = pieces[0::2]  # template text around the sentinels
    ids = [int(i) for i in pieces[1::2]]
    if any(i >= len(texts) for i in ids) or any(_OPEN in lit or _CLOSE in lit for lit in literals):
        return [(text, True)], False  # a sentinel was cut or rewritten by the template
    regions = _exact(text, literals, [texts[i] for i in ids])
    exact = regions is not None
    if regions is None:
        regions = _between(text, literals)
    if regions is None:
        return [(text, True)], False
    parts: list[Part] = [(literals[0], True)]
    for region, literal in zip(regions, literals[1:]):
        parts += [(region, False), (literal, True)]
    return _nonempty(parts), exact


def _variants(s: str) -> list[str]:
    out: list[str] = []
    for v in (s, s.strip(), s.lstrip(), s.rstrip()):
        if v not in out:
            out.append(v)
    return out


def _exact(text: str, literals: list[str], contents: list[str]) -> list[str] | None:
    """Regions for each sentinel, each one a variant of its text, with the literals in between
    matching exactly; a depth-first search with dead states remembered."""
    if not text.startswith(literals[0]):
        return None
    n = len(contents)
    dead: set[tuple[int, int]] = set()
    # stack of (sentinel index, position, variant index tried next); chosen[k] is the region
    stack = [(0, len(literals[0]), 0)]
    chosen: list[str] = []
    while stack:
        k, pos, v = stack.pop()
        del chosen[k:]
        if k == n:
            if pos == len(text):
                return chosen
            continue
        variants = _variants(contents[k])
        if v >= len(variants) or (k, pos) in dead:
            dead.add((k, pos))
            continue
        stack.append((k, pos, v + 1))  # come back for the next variant
        cand, lit = variants[v], literals[k + 1]
        end = pos + len(cand)
        if text.startswith(cand, pos) and text.startswith(lit, end):
            chosen.append(cand)
            stack.append((k + 1, end + len(lit), 0))
    return None


def _between(text: str, literals: list[str]) -> list[str] | None:
    """Regions as whatever lies between the literals, found left to right; the last literal must
    end the text. Two sentinels with nothing between them cannot be told apart."""
    if not text.startswith(literals[0]):
        return None
    pos, regions = len(literals[0]), []
    last = len(literals) - 1
    for k in range(1, len(literals)):
        lit = literals[k]
        if k == last:
            end = len(text) - len(lit)
            if end < pos or not text.endswith(lit):
                return None
        elif not lit:
            return None
        else:
            end = text.find(lit, pos)
            if end < 0:
                return None
        regions.append(text[pos:end])
        pos = end + len(lit)
    return regions


def _nonempty(parts: list[Part]) -> list[Part]:
    return [p for p in parts if p[0]]
