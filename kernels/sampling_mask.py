"""A grammar's allowed-token mask applied to a row of logits (structured output).

The mask is llguidance's: one bit per token, 32 to an int32 word, token t at bit t & 31 of
word t >> 5. Allowed tokens are usually few (a JSON key, a digit, a closing brace) and at
most the whole vocabulary (inside a string), so the mask becomes a sparse candidate set:
its allowed tokens in token order. Zero words skip 32 tokens at once.
"""

import numpy as np

from ._jit import kernel


@kernel
def gather_allowed(out_ids, out_vals, vals, mask, n):
    """out_ids/out_vals[:cnt] = the tokens < n whose bit is set, with vals[token]; returns cnt."""
    cnt = 0
    n_words = (n + 31) >> 5
    for w in range(n_words):
        bits = np.uint32(mask[w])
        if bits == 0:
            continue
        base = w << 5
        top = min(32, n - base)
        for b in range(top):
            if (bits >> np.uint32(b)) & np.uint32(1):
                out_ids[cnt] = base + b
                out_vals[cnt] = vals[base + b]
                cnt += 1
    return cnt

