"""A grammar's allowed-token mask applied to a row of logits (structured output).

The mask is llguidance's: one bit per token, 32 to an int32 word, token t at bit t & 31 of
word t >> 5. Allowed tokens are usually few (a JSON key, a digit, a closing brace) and at
most the whole vocabulary (inside a string), so the mask becomes a sparse candidate set:
its allowed tokens in token order. Zero words skip 32 tokens at once, full words copy them.
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
        if bits == np.uint32(0xFFFFFFFF):  # all allowed (inside a string): a plain copy
            for b in range(top):
                out_ids[cnt + b] = base + b
                out_vals[cnt + b] = vals[base + b]
            cnt += top
            continue
        for b in range(top):
            if (bits >> np.uint32(b)) & np.uint32(1):
                out_ids[cnt] = base + b
                out_vals[cnt] = vals[base + b]
                cnt += 1
    return cnt



@kernel
def count_allowed(mask, n):
    """How many tokens < n the mask allows."""
    cnt = 0
    full = n >> 5
    for w in range(full):
        x = np.uint32(mask[w])
        # popcount (SWAR): bits per 2, 4, 8, then summed bytes
        x = x - ((x >> np.uint32(1)) & np.uint32(0x55555555))
        x = (x & np.uint32(0x33333333)) + ((x >> np.uint32(2)) & np.uint32(0x33333333))
        x = (x + (x >> np.uint32(4))) & np.uint32(0x0F0F0F0F)
        cnt += ((x * np.uint32(0x01010101)) >> np.uint32(24)) & np.uint32(0xFF)
    for t in range(full << 5, n):
        cnt += (np.uint32(mask[t >> 5]) >> np.uint32(t & 31)) & np.uint32(1)
    return cnt


@kernel
def mask_dense(out, vals, mask, n):
    """out[t] = vals[t] where the mask allows t, -inf elsewhere (the whole vocabulary stays, in order)."""
    ninf = np.float32(-np.inf)
    full = n >> 5
    for w in range(full):  # 32 lanes with a fixed trip count: LLVM vectorizes the select
        bits = np.uint32(mask[w])
        base = w << 5
        for b in range(32):
            keep = (bits >> np.uint32(b)) & np.uint32(1)
            out[base + b] = vals[base + b] if keep != 0 else ninf
    for t in range(full << 5, n):
        keep = (np.uint32(mask[t >> 5]) >> np.uint32(t & 31)) & np.uint32(1)
        out[t] = vals[t] if keep != 0 else ninf
