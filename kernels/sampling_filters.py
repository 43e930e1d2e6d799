"""The sampler chain's filters and penalties, on candidate sets as kernels/sampling.py defines them.

Semantics follow llama.cpp's samplers (src/llama-sampling.cpp); tests/oracles/sampling.py
restates each in NumPy. DRY is in kernels/sampling_dry.py. The penalties cost O(window),
plus O(n) when the set is not the dense vocabulary; `counts` is an int32 scratch of n_vocab
entries that is all zero on entry and on exit.
"""

import numpy as np

from ._jit import kernel
from .fastexp import fast_exp
from .sampling import _CHUNK, _EXP_CUT, _n_at_least, _sort_desc, count_at_least, filter_at_least, max_logit

_NEG_FINITE = np.float32(-3.0e38)  # below every finite logit that matters; -inf is not above it


@kernel
def _penalize(x, c, repeat, freq, present):
    """One token's repetition penalty: scale toward 0 by repeat, then subtract c*freq + present."""
    if x <= 0.0:
        x = x * repeat
    else:
        x = x / repeat
    return x - (np.float32(c) * freq + present)


@kernel
def apply_penalties(vals, counts, ids, window, dense, n, repeat, freq, present):
    """Repeat/frequency/presence penalties on vals[:n] for the tokens of window (the last repeat_last_n accepted)."""
    w = window.shape[0]
    for i in range(w):
        counts[window[i]] += 1
    if dense:
        for i in range(w):
            t = window[i]
            c = counts[t]
            if c > 0:
                vals[t] = _penalize(vals[t], c, repeat, freq, present)
                counts[t] = 0
    else:
        for i in range(n):
            c = counts[ids[i]]
            if c > 0:
                vals[i] = _penalize(vals[i], c, repeat, freq, present)
        for i in range(w):
            counts[window[i]] = 0


@kernel
def top_n_sigma_mask(vals, n, nsigma):
    """Sets vals[:n] below max - nsigma * std (over the finite entries) to -inf."""
    s = np.float32(0.0)
    c = 0
    for i in range(n):  # selects, not branches: vectorizes
        x = vals[i]
        ok = x > _NEG_FINITE
        s += x if ok else np.float32(0.0)
        c += 1 if ok else 0
    if c == 0:
        return
    m = max_logit(vals, n)  # a separate pass: max() in the loop above would serialize it
    mean = np.float32(s / c)
    acc = np.float32(0.0)
    for i in range(n):
        x = vals[i]
        d = x - mean
        acc += d * d if x > _NEG_FINITE else np.float32(0.0)
    thr = np.float32(m - nsigma * np.sqrt(acc / c))
    ninf = np.float32(-np.inf)
    for i in range(n):
        x = vals[i]
        vals[i] = ninf if x < thr else x


@kernel
def top_p_cut(vals, n, m, s, p, min_keep):
    """For vals[:n] sorted descending: the shortest prefix with probability mass >= p and at least min_keep entries; -1 if none."""
    cum = 0.0
    inv = 1.0 / s
    for i in range(n):
        d = vals[i] - m
        cum += np.float64(fast_exp(d) if d > _EXP_CUT else np.float32(0.0)) * inv
        if cum >= p and i + 1 >= min_keep:
            return i + 1
    return -1


@kernel
def top_p_filter(out_ids, out_vals, buf_ids, buf_vals, probs, ids, vals, dense, n, p, min_keep):
    """out[:c] = the fewest most likely entries of vals[:n] (ties: earlier first) holding probability >= p; returns c, or -1 if c < min_keep.

    No full sort. Logit bounds lo < hi with mass(>= hi) < p <= mass(>= lo) come from
    stepping down from the maximum (1, 2, 4, ... logits), then bisection until at most 1024
    entries lie in [lo, hi), one vectorized pass per step; only [lo, hi) is sorted.
    Output: the entries >= hi in position order, then the kept part of [lo, hi)
    descending. probs, buf_*: scratch (n,). out must not alias the input.
    """
    m = max_logit(vals, n)
    total = 0.0  # float64 sums: ties at the cut make it sensitive to rounding
    for i in range(n):
        d = vals[i] - m
        e = fast_exp(d) if d > _EXP_CUT else np.float32(0.0)
        probs[i] = e
        total += np.float64(e)
    target = np.float64(p) * total
    floor = m + _EXP_CUT  # below this every exp is 0 here
    hi = m + np.float32(1.0)
    lo = m
    mass_hi = 0.0
    cnt_hi = 0
    cnt_lo = 0
    step = np.float32(1.0)
    while True:  # step down until mass(>= lo) reaches the target
        lo = hi - step
        if lo <= floor:
            lo = floor
            cnt_lo = count_at_least(vals, n, lo)
            break
        mass, cnt = _mass_at_least(probs, vals, n, lo)
        if mass >= target:
            cnt_lo = cnt
            break
        hi, mass_hi, cnt_hi = lo, mass, cnt
        step = step * np.float32(2.0)
    while cnt_lo - cnt_hi > 1024:  # bisect
        mid = lo + (hi - lo) * np.float32(0.5)
        if mid <= lo or mid >= hi:
            break  # ties: the bracket cannot shrink
        mass, cnt = _mass_at_least(probs, vals, n, mid)
        if mass >= target:
            lo, cnt_lo = mid, cnt
        else:
            hi, mass_hi, cnt_hi = mid, mass, cnt
    w = filter_at_least(out_ids, out_vals, ids, vals, dense, n, hi)
    nb = 0
    pos = 0
    while pos < n:  # the bracket [lo, hi), in position order
        end = min(pos + _CHUNK, n)
        if end - pos == _CHUNK and _n_at_least(vals[pos:end], lo) == 0:
            pos = end
            continue
        for i in range(pos, end):
            x = vals[i]
            if x >= lo and x < hi:
                buf_ids[nb] = i if dense else ids[i]
                buf_vals[nb] = x
                nb += 1
        pos = end
    _sort_desc(out_ids[w:], out_vals[w:], buf_ids, buf_vals, nb)  # stable: ties keep position order
    cum = mass_hi
    for j in range(nb):
        d = out_vals[w + j] - m
        cum += np.float64(fast_exp(d) if d > _EXP_CUT else np.float32(0.0))
        if cum >= target and w + j + 1 >= min_keep:
            return w + j + 1
    return w + nb if w + nb >= min_keep else -1


@kernel
def _mass_at_least(probs, vals, n, t):
    """(sum of probs[i], count) over the i < n with vals[i] >= t."""
    mass = 0.0
    cnt = 0
    for i in range(n):
        ok = vals[i] >= t
        mass += np.float64(probs[i]) if ok else 0.0
        cnt += 1 if ok else 0
    return mass, cnt


@kernel
def typical_order(order, probs, n, p, min_keep):
    """order[:c] = positions of probs[:n] by |-log p - entropy| ascending, cut where their mass first exceeds p; returns c."""
    h = 0.0
    for i in range(n):
        q = probs[i]
        if q > 0.0:
            h -= np.float64(q) * np.log(np.float64(q))
    score = np.empty(n, np.float64)  # typical_p is off by default; this path may allocate
    for i in range(n):
        q = probs[i]
        score[i] = abs(-np.log(np.float64(q)) - h) if q > 0.0 else 1e300
    idx = np.argsort(score, kind="mergesort")
    cum = 0.0
    last = n
    for i in range(n):
        cum += np.float64(probs[idx[i]])
        if cum > p and (min_keep == 0 or i >= min_keep - 1):
            last = i + 1
            break
    for i in range(last):
        order[i] = idx[i]
    return last


@kernel
def gather(out_ids, out_vals, ids, vals, order, dense, c):
    """out[i] = entry order[i] of (ids, vals) for i < c; out must not alias the input."""
    for i in range(c):
        j = order[i]
        out_ids[i] = j if dense else ids[j]
        out_vals[i] = vals[j]


@kernel
def xtc_cut(probs, n, threshold):
    """For probs[:n] sorted descending: the last position of the leading run with p >= threshold (0 if none)."""
    last = 0
    for i in range(n):
        if probs[i] >= threshold:
            last = i
        else:
            break
    return last


@kernel
def entropy(probs, n):
    """-sum p log p over probs[:n] (p > 0)."""
    h = 0.0
    for i in range(n):
        q = probs[i]
        if q > 0.0:
            h -= np.float64(q) * np.log(np.float64(q))
    return h


@kernel
def mirostat_k(vals, m, n_vocab, mu):
    """Mirostat 1's top-k size from the m (<= 100) largest logits vals[:m], descending (may be inf/nan: the caller clamps)."""
    num = 0.0
    den = 0.0
    for i in range(m - 1):
        t = np.log((i + 2.0) / (i + 1.0))
        b = np.float64(vals[i]) - np.float64(vals[i + 1])  # log(p_i / p_{i+1})
        num += t * b
        den += t * t
    if den == 0.0:
        return 1.0
    s_hat = num / den
    eps = s_hat - 1.0
    return ((eps * 2.0**mu) / (1.0 - float(n_vocab) ** (-eps))) ** (1.0 / s_hat)
