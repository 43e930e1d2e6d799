"""logit_bias as llama-server reads it, resolved to (token_id, bias) pairs for SamplingParams.

Accepted forms (a request's JSON, decoded):
- [[token_id, bias], ...]: ids outside [0, n_vocab) are dropped, as llama-server does;
- [["text", bias], ...]: the text is tokenized without special tokens and every one of its
  tokens gets the bias (so ["Hello world", -5] biases "Hello" and " world");
- {"token_id_or_text": bias, ...} (OpenAI's form): a key that is an integer (optional
  leading whitespace and sign, then digits only, as strtol reads it) is a token id,
  anything else is text;
- a bias of `false` means "never" (-inf); null or no field means no bias.

llama-server silently skips entries of the wrong shape or type; here they raise ValueError
naming logit_bias, so a client learns of its mistake (a 400) instead of an ignored bias.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

_STRTOL_INT = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def resolve_logit_bias(value: Any, tokenizer: Any, n_vocab: int) -> tuple[tuple[int, float], ...]:
    """The (token_id, bias) pairs of a request's logit_bias; tokenizer: service.tokenizer.Tokenizer."""
    if value is None:
        return ()

    def tokens(text: str) -> list[int]:
        return tokenizer.tokenize(text, add_special=False, parse_special=False)

    out: list[tuple[int, float]] = []
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError(f"logit_bias[{i}]: expected a [token, bias] pair, got {item!r}")
            key, raw = item
            bias = _bias(raw, f"logit_bias[{i}]")
            if isinstance(key, bool) or not isinstance(key, (int, str)):
                raise ValueError(f"logit_bias[{i}]: expected a token id or a string, got {key!r}")
            _add(out, key, bias, n_vocab, tokens)
    elif isinstance(value, dict):
        for key, raw in value.items():
            if not isinstance(key, str):
                raise ValueError(f"logit_bias: keys must be token ids or strings, got {key!r}")
            bias = _bias(raw, f"logit_bias[{key!r}]")
            _add(out, int(key) if _STRTOL_INT.fullmatch(key) else key, bias, n_vocab, tokens)
    else:
        raise ValueError(f"logit_bias: expected an array of [token, bias] pairs or an object, got {value!r}")
    return tuple(out)


def _bias(raw: Any, where: str) -> float:
    if raw is False:
        return -math.inf
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError(f"{where}: the bias must be a number or false, got {raw!r}")
    try:
        b = float(raw)
    except OverflowError:
        raise ValueError(f"{where}: the bias is out of range, got {raw!r}") from None
    if math.isnan(b) or b == math.inf:
        raise ValueError(f"{where}: the bias must be a finite number or false, got {raw!r}")
    return b


def _add(out: list[tuple[int, float]], key: int | str, bias: float, n_vocab: int,
         tokens: Callable[[str], list[int]]) -> None:
    if isinstance(key, int):
        if 0 <= key < n_vocab:
            out.append((key, bias))
        return
    out.extend((t, bias) for t in tokens(key))
