"""Candidate-set kernels for the sampler chain: top-k selection, softmax, threshold filters, draws.

A candidate set is `ids` (int32), `logits` (float32) and a size `n`; `dense` means the set is
the whole vocabulary in token order, so position i is token i and `ids` is not read.
Masked tokens hold -inf, as in llama.cpp; these fastmath kernels never compare against an
infinite constant: they test finite thresholds (`d > _EXP_CUT`), which -inf fails correctly.

Nothing here sorts a whole vocabulary. `top_k_select` scans it once, 64 logits at a time:
a chunk with no logit above the running k-th best (one vectorized compare-and-count) is
skipped; the rest go to a buffer of `cap` entries that is cut back to the k best
(quickselect) whenever it fills, which raises the threshold. Only the k survivors are
sorted. For logits in no particular order that is one vectorized pass plus
O(k log(n/k)) buffered values (~30 us for 262,144 logits, k = 40, cap = 128); logits
that rise with the token id are the worst case (every one buffered: ~1.4 ms).
"""

import numpy as np

from ._jit import inline_kernel, kernel
from .activation import row_max
from .fastexp import fast_exp

_EXP_CUT = np.float32(-87.0)  # expf underflows below ~-104; fast_exp clamps at -87: call it 0
_CHUNK = 64
_SMALL_SORT = 48  # insertion sort up to here, stable merge sort above


@kernel
def _kth_largest(a, n, k):
    """The k-th largest (1 <= k <= n) of a[:n]; reorders a[:n] (3-way quickselect)."""
    lo = 0
    hi = n - 1
    target = k - 1  # index in descending order
    while lo < hi:
        mid = (lo + hi) >> 1
        x = a[lo]
        y = a[mid]
        z = a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
        pivot = x if x > y else y  # median of the three
        lt = lo
        i = lo
        gt = hi
        while i <= gt:  # [lo, lt): > pivot, [lt, i): == pivot, (gt, hi]: < pivot
            v = a[i]
            if v > pivot:
                a[i] = a[lt]
                a[lt] = v
                lt += 1
                i += 1
            elif v < pivot:
                a[i] = a[gt]
                a[gt] = v
                gt -= 1
            else:
                i += 1
        if target < lt:
            hi = lt - 1
        elif target > gt:
            lo = gt + 1
        else:
            return pivot
    return a[lo]


@kernel
def _cut_to_k(buf_ids, buf_vals, tmp, cnt, k):
    """Keeps in buf[:k] the k best of buf[:cnt] (ties: earlier slot first), in slot order; returns the k-th value."""
    for i in range(cnt):
        tmp[i] = buf_vals[i]
    kth = _kth_largest(tmp, cnt, k)
    n_gt = 0
    for i in range(cnt):
        if buf_vals[i] > kth:
            n_gt += 1
    need_eq = k - n_gt
    w = 0
    for i in range(cnt):
        v = buf_vals[i]
        keep = v > kth
        if not keep and v == kth and need_eq > 0:
            need_eq -= 1
            keep = True
        if keep:
            buf_vals[w] = v
            buf_ids[w] = buf_ids[i]
            w += 1
    return kth


@kernel
def _sort_desc(out_ids, out_vals, buf_ids, buf_vals, k):
    """out[:k] = buf[:k] sorted by value descending, stable (ties keep buffer order)."""
    if k <= _SMALL_SORT:
        for i in range(k):
            out_vals[i] = buf_vals[i]
            out_ids[i] = buf_ids[i]
        for i in range(1, k):
            v = out_vals[i]
            t = out_ids[i]
            j = i - 1
            while j >= 0 and out_vals[j] < v:
                out_vals[j + 1] = out_vals[j]
                out_ids[j + 1] = out_ids[j]
                j -= 1
            out_vals[j + 1] = v
            out_ids[j + 1] = t
        return
    neg = np.empty(k, np.float32)  # large k only (top_p's widening, mirostat): not the hot path
    for i in range(k):
        neg[i] = -buf_vals[i]
    order = np.argsort(neg, kind="mergesort")
    for i in range(k):
        out_vals[i] = buf_vals[order[i]]
        out_ids[i] = buf_ids[order[i]]


@kernel
def top_k_select(out_ids, out_vals, buf_ids, buf_vals, tmp, ids, vals, dense, n, k, cap, want_sorted):
    """out[:k'] = the k' = min(k, n) largest vals[:n] (ties: lower position first) with their ids; returns k'.

    Descending when want_sorted, else in position order. buf_ids/buf_vals/tmp: scratch of
    length >= cap, cap >= min(n, 2k). out may alias ids/vals.
    """
    if k > n:
        k = n
    if k <= 0:
        return 0
    if cap > n:
        cap = n
    for j in range(cap):
        buf_vals[j] = vals[j]
        buf_ids[j] = j if dense else ids[j]
    cnt = cap
    pos = cap
    if pos < n:
        t = _cut_to_k(buf_ids, buf_vals, tmp, cnt, k)
        cnt = k
        while pos < n:
            end = min(pos + _CHUNK, n)
            if end - pos == _CHUNK and _n_above(vals[pos:end], t) == 0:
                pos = end  # the common case: nothing in this chunk beats the k-th best
                continue
            for j in range(pos, end):
                x = vals[j]
                if x > t:
                    buf_vals[cnt] = x
                    buf_ids[cnt] = j if dense else ids[j]
                    cnt += 1
                    if cnt == cap:
                        t = _cut_to_k(buf_ids, buf_vals, tmp, cnt, k)
                        cnt = k
            pos = end
    if cnt > k:
        _cut_to_k(buf_ids, buf_vals, tmp, cnt, k)
    if want_sorted:
        _sort_desc(out_ids, out_vals, buf_ids, buf_vals, k)
    else:
        for i in range(k):
            out_ids[i] = buf_ids[i]
            out_vals[i] = buf_vals[i]
    return k


@inline_kernel
def _n_above(w, t):
    """Number of entries of the _CHUNK-long w above t (vectorizes: a compare and an add per lane)."""
    c = 0
    for i in range(_CHUNK):
        c += 1 if w[i] > t else 0
    return c


@inline_kernel
def _n_at_least(w, t):
    """Number of entries of the _CHUNK-long w >= t."""
    c = 0
    for i in range(_CHUNK):
        c += 1 if w[i] >= t else 0
    return c


@kernel
def max_logit(vals, n):
    """max(vals[:n]) (n >= 1)."""
    return row_max(vals[:n])


@kernel
def exp_sum(vals, n, m):
    """sum over vals[:n] of exp(v - m), exp(-inf) = 0 (summed in float32 SIMD lanes; returned as float64)."""
    s = np.float32(0.0)
    for i in range(n):
        d = vals[i] - m
        s += fast_exp(d) if d > _EXP_CUT else np.float32(0.0)
    return np.float64(s)


@inline_kernel
def _exp_shifted(probs, vals, n):
    """probs[:n] = exp(vals[:n] - max) (exp(-inf) = 0); returns (max, their sum as float64)."""
    m = max_logit(vals, n)
    s32 = np.float32(0.0)  # float32 SIMD lanes: a float64 sum would halve the width
    for i in range(n):
        d = vals[i] - m
        e = fast_exp(d) if d > _EXP_CUT else np.float32(0.0)
        probs[i] = e
        s32 += e
    return m, np.float64(s32)


@kernel
def softmax(probs, vals, n):
    """probs[:n] = softmax(vals[:n]) (exp(-inf) = 0); returns (max, sum of exp(v - max))."""
    m, s = _exp_shifted(probs, vals, n)
    inv = np.float32(1.0 / s) if s > 0.0 else np.float32(0.0)
    for i in range(n):
        probs[i] = probs[i] * inv
    return m, s


@kernel
def sample_dist(probs, vals, n, u):
    """probs[:n] = softmax(vals[:n]); returns the first position whose running sum reaches u * total (u in [0, 1)), skipping zero-probability entries; -1 if all are zero."""
    m, s = _exp_shifted(probs, vals, n)
    if not s > 0.0:  # every entry at -inf
        for i in range(n):
            probs[i] = 0.0
        return -1
    target = s * u
    # find the chunk holding the target with vectorized chunk sums, then walk it
    run = 0.0
    pos = 0
    while pos + _CHUNK <= n:
        cs = np.float32(0.0)
        w = probs[pos : pos + _CHUNK]
        for j in range(_CHUNK):
            cs += w[j]
        if run + np.float64(cs) >= target:
            break
        run += np.float64(cs)
        pos += _CHUNK
    sel = -1
    for i in range(pos, n):
        e = probs[i]
        run += np.float64(e)
        if run >= target and e > 0.0:
            sel = i
            break
    if sel < 0:  # rounding at u -> 1: the last token with a nonzero probability
        for i in range(n - 1, -1, -1):
            if probs[i] > 0.0:
                sel = i
                break
    inv = np.float32(1.0 / s)
    for i in range(n):
        probs[i] = probs[i] * inv
    return sel


@kernel
def count_at_least(vals, n, thr):
    """Number of vals[:n] >= thr."""
    c = 0
    for i in range(n):
        c += 1 if vals[i] >= thr else 0
    return c



@kernel
def filter_at_least(out_ids, out_vals, ids, vals, dense, n, thr):
    """out[:c] = the entries of vals[:n] >= thr with their ids, in order; returns c. out may alias the input."""
    w = 0
    if count_at_least(vals, n, thr) * 32 > n:  # dense: branchless, each entry read before out[w <= j] is written
        if dense:
            for j in range(n):
                x = vals[j]
                out_ids[w] = j
                out_vals[w] = x
                w += 1 if x >= thr else 0
        else:
            for j in range(n):
                x = vals[j]
                out_ids[w] = ids[j]
                out_vals[w] = x
                w += 1 if x >= thr else 0
        return w
    pos = 0
    while pos < n:  # sparse: most chunks are skipped after one vectorized count
        end = min(pos + _CHUNK, n)
        if end - pos == _CHUNK and _n_at_least(vals[pos:end], thr) == 0:
            pos = end
            continue
        for j in range(pos, end):
            x = vals[j]
            if x >= thr:
                out_ids[w] = j if dense else ids[j]
                out_vals[w] = x
                w += 1
        pos = end
    return w


@kernel
def scale_logits(out, vals, n, temp):
    """out[:n] = vals[:n] / temp (temp > 0); out may be vals."""
    for i in range(n):
        out[i] = vals[i] / temp


@kernel
def greedy_mask(out, vals, n):
    """out[:n] = vals[:n] with every entry but the first maximum set to -inf; returns its position."""
    best = 0
    m = vals[0]
    for i in range(1, n):
        if vals[i] > m:
            m = vals[i]
            best = i
    ninf = np.float32(-np.inf)
    for i in range(n):
        out[i] = ninf
    out[best] = m
    return best


@kernel
def add_logit_bias(vals, tokens, biases, n_bias):
    """vals[tokens[i]] += biases[i] for i < n_bias (dense vocabulary logits)."""
    for i in range(n_bias):
        vals[tokens[i]] += biases[i]
