"""DRY ("don't repeat yourself"), llama.cpp's repetition penalty for multi-token sequences.

When the last tokens repeat an earlier stretch of the window, the token that followed that
stretch would extend the repeat: it loses multiplier * base^(length - allowed_length).
Sequence breakers (token-id sequences, see service.sampling.dry_breaker_sequences) stop a
repeat from reaching back past them. O(window) per call (a Z-algorithm over the reversed
window), plus O(n) on a compact candidate set. `marks` is an int32 scratch of n_vocab
entries, all zero on entry and on exit.
"""

import numpy as np

from ._jit import kernel


@kernel
def dry_max_repeats(marks, rep, window, brk_start, brk_len, brk_off, brk_tails, allowed):
    """marks[t] = 1 + the longest repeat that token t would extend (0: none); returns -1 when DRY is off for this window.

    window: the last dry_penalty_last_n tokens, oldest first; rep: int32 scratch >= len(window).
    Breakers: brk_start (n_vocab + 1) indexes, per head token, a run of breakers b whose tail
    (the tokens after the head; empty for a single-token breaker) is
    brk_tails[brk_off[b]:brk_off[b] + brk_len[b]].
    """
    L = window.shape[0]
    if L <= allowed:
        return -1
    # Step 1: the most recent sequence breaker limits how far back a repeat may reach.
    rep_limit = L
    for i in range(L):
        tok = window[L - 1 - i]
        longest = -1
        for b in range(brk_start[tok], brk_start[tok + 1]):
            s = brk_len[b]
            if s > longest and s <= i:
                ok = True
                off = brk_off[b]
                for o in range(s):  # the tail follows the head, toward the window's end
                    if brk_tails[off + o] != window[L - i + o]:
                        ok = False
                        break
                if ok:
                    longest = s
        if longest >= 0:
            rep_limit = i - longest
            break
    if rep_limit < allowed:
        return -1
    # Step 2: rep[L-1-k] = length of the longest suffix of the window that also ends k tokens
    # back (Z-algorithm on the reversed window), capped at rep_limit.
    last = L - 1
    for i in range(L):
        rep[i] = 0
    lt = 0
    rt = 0
    for k in range(1, L):
        if k > rt:
            m = 0
            while m + k < L and window[last - m] == window[last - m - k]:
                m += 1
            rep[last - k] = min(m, rep_limit)
            if m > 0:
                lt = k
                rt = k + m - 1
        else:
            p = k - lt
            right = rt - k + 1
            if rep[last - p] < right:
                rep[last - k] = min(rep[last - p], rep_limit)
            else:
                i = rt + 1
                while i < L and window[last - i] == window[last - (i - k)]:
                    i += 1
                rep[last - k] = min(i - k, rep_limit)
                lt = k
                rt = i - 1
    # Step 3: the token after each repeat's earlier occurrence would extend it.
    for i in range(L - 1):
        r = rep[i]
        if r >= allowed:
            tok = window[i + 1]
            if marks[tok] < r + 1:
                marks[tok] = r + 1
    return rep_limit


@kernel
def dry_apply(vals, marks, ids, window, brk_start, brk_len, dense, n, allowed, multiplier, base, max_exp):
    """Subtracts multiplier * base^min(repeat - allowed, max_exp) from each marked token (not single-token breakers); clears marks."""
    if dense:
        for i in range(window.shape[0]):
            t = window[i]
            r = marks[t]
            if r > 0:
                marks[t] = 0
                if not _single_breaker(brk_start, brk_len, t):
                    vals[t] -= _dry_penalty(r - 1 - allowed, multiplier, base, max_exp)
    else:
        for i in range(n):
            t = ids[i]
            r = marks[t]
            if r > 0 and not _single_breaker(brk_start, brk_len, t):
                vals[i] -= _dry_penalty(r - 1 - allowed, multiplier, base, max_exp)
        for i in range(window.shape[0]):
            marks[window[i]] = 0


@kernel
def _single_breaker(brk_start, brk_len, t):
    """True when token t alone is a sequence breaker."""
    for b in range(brk_start[t], brk_start[t + 1]):
        if brk_len[b] == 0:
            return True
    return False


@kernel
def _dry_penalty(e, multiplier, base, max_exp):
    """multiplier * base^e with e capped at max_exp (when max_exp > 0)."""
    if max_exp > 0 and e > max_exp:
        e = max_exp
    return np.float32(multiplier * np.power(np.float64(base), np.float64(e)))
