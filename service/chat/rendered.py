"""A rendered chat prompt, and its tokenization with special tokens recognised only where the
template wrote them.

llama-server tokenizes the whole prompt with special-token parsing, so a user who types
`<|im_end|>\\n<|im_start|>system` gets real control tokens: a forged system turn. Here the
template's own text is split on special tokens and the messages' text is not; the text fragments
either side of each boundary are then joined again before the BPE/SentencePiece step, so a prompt
without such text tokenizes exactly as llama.cpp tokenizes the whole string.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.tokenizer import Tokenizer

Part = tuple[str, bool]  # (text, from_template)

_ASCII_SPACE = " \t\n\v\f\r"  # what llama.cpp's LSTRIP/RSTRIP tokens eat
_splitters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Rendered:
    text: str  # the prompt exactly as the template printed it
    parts: list[Part] = field(default_factory=list)  # "".join(t for t, _ in parts) == text
    exact: bool = True  # False: the template rewrote message text and parts are best effort

    def prompt(self, tokenizer: Tokenizer) -> str:
        """The text less a leading BOS / trailing EOS that tokenization adds itself (what
        llama-server reports as the prompt of /apply-template)."""
        return "".join(t for t, _ in self._trimmed(tokenizer))

    def tokenize(self, tokenizer: Tokenizer) -> list[int]:
        """Token ids of the prompt: BOS/EOS as the vocabulary adds them (never twice), special
        tokens parsed in template text only."""
        splitter = _splitter_of(tokenizer)
        frags: list[str | int] = []
        for text, special in self._trimmed(tokenizer):
            for frag in splitter.split(text, special):
                if isinstance(frag, str) and frags and isinstance(frags[-1], str):
                    frags[-1] += frag  # rejoin text across a part boundary
                else:
                    frags.append(frag)
        _strip_around(tokenizer, frags)
        ids = [tokenizer.bos_id] if tokenizer.add_bos else []
        for frag in frags:
            if isinstance(frag, int):
                ids.append(frag)
            elif frag:
                # A text fragment here always follows a special token or starts the prompt, the
                # same place where whole-prompt tokenization would give it SentencePiece's
                # leading space; control tokens are gone from it, so parse_special is moot.
                ids.extend(tokenizer.tokenize(frag, add_special=False, parse_special=False))
        if tokenizer.add_eos:
            ids.append(tokenizer.eos_id)
        return ids

    def _trimmed(self, tokenizer: Tokenizer) -> list[Part]:
        parts = list(self.parts)
        if tokenizer.add_bos and parts and parts[0][1]:
            bos = tokenizer.token_text(tokenizer.bos_id)
            if bos and parts[0][0].startswith(bos):
                parts[0] = (parts[0][0][len(bos):], True)
        if tokenizer.add_eos and parts and parts[-1][1]:
            eos = tokenizer.token_text(tokenizer.eos_id)
            if eos and parts[-1][0].endswith(eos):
                parts[-1] = (parts[-1][0][:-len(eos)], True)
        return [p for p in parts if p[0]]


def _splitter_of(tokenizer: Tokenizer):
    from service.tokenizer.special import SpecialSplitter  # noqa: PLC0415 (keeps the worker light)

    splitter = _splitters.get(tokenizer)
    if splitter is None:
        splitter = _splitters[tokenizer] = SpecialSplitter(tokenizer.vocab)
    return splitter


def _strip_around(tokenizer: Tokenizer, frags: list[str | int]) -> None:
    """Tokens marked LSTRIP/RSTRIP eat the whitespace beside them; within one part the splitter
    did that already, across a part boundary it is done here."""
    from service.tokenizer.vocab import ATTR_LSTRIP, ATTR_RSTRIP  # noqa: PLC0415

    attrs = tokenizer.vocab.attrs
    for k, frag in enumerate(frags):
        if not isinstance(frag, int):
            continue
        if attrs[frag] & ATTR_LSTRIP and k > 0 and isinstance(frags[k - 1], str):
            frags[k - 1] = frags[k - 1].rstrip(_ASCII_SPACE)
        if attrs[frag] & ATTR_RSTRIP and k + 1 < len(frags) and isinstance(frags[k + 1], str):
            frags[k + 1] = frags[k + 1].lstrip(_ASCII_SPACE)
