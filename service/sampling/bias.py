"""logit_bias resolved to (token_id, bias) pairs for SamplingParams.

The HTTP edge reads llama-server's forms ([[id_or_text, bias], ...] or {"id_or_text": bias},
`false` meaning never) into (key, bias) pairs (service.api.protocol.logit_bias_pairs); here:
- an integer key is a token id; ids outside [0, n_vocab) are dropped, as llama-server does;
- a text key is tokenized without special tokens and every one of its tokens gets the bias
  (so ("Hello world", -5) biases "Hello" and " world");
- a bias of -inf means "never".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def resolve_logit_bias(pairs: Iterable[tuple[int | str, float]], tokenizer: Any,
                       n_vocab: int) -> tuple[tuple[int, float], ...]:
    """The (token_id, bias) pairs; tokenizer: service.tokenizer.Tokenizer. ValueError naming
    logit_bias for a bias that is NaN or +inf (-inf bans the token)."""
    out: list[tuple[int, float]] = []
    for key, bias in pairs:
        bias = float(bias)
        if math.isnan(bias) or bias == math.inf:
            raise ValueError(f"logit_bias[{key!r}]: the bias must be a finite number or false, got {bias!r}")
        if isinstance(key, int):
            if 0 <= key < n_vocab:
                out.append((key, bias))
        else:
            out.extend((t, bias) for t in tokenizer.tokenize(key, add_special=False, parse_special=False))
    return tuple(out)
