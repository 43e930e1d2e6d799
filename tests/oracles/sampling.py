"""NumPy references for llama-server's samplers (the semantics of llama.cpp's src/llama-sampling.cpp).

A candidate set is a pair (ids, logits) of arrays in a meaningful order; each sampler takes
one and returns the next. Sorting is a full stable sort by descending logit (ties: earlier
first), the same tie rule as the kernels. Float64 throughout except where llama.cpp's
float32 decides a boundary (min_p's log, the temperature division).
"""

from __future__ import annotations

import math

import numpy as np


def softmax(logits):
    x = np.asarray(logits, np.float64)
    m = x.max()
    e = np.where(np.isneginf(x), 0.0, np.exp(x - m))
    return e / e.sum()


def sort_desc(ids, logits):
    o = np.argsort(-np.asarray(logits, np.float64), kind="stable")
    return ids[o], logits[o]


def logit_bias(logits, pairs):
    out = np.array(logits, np.float32)
    for t, b in pairs:
        out[t] = np.float32(out[t] + np.float32(b))
    return out


def penalties(ids, logits, window, repeat, freq, present):
    counts = {}
    for t in window:
        counts[int(t)] = counts.get(int(t), 0) + 1
    out = np.array(logits, np.float32)
    for i, t in enumerate(ids):
        c = counts.get(int(t), 0)
        if c:
            x = out[i] * np.float32(repeat) if out[i] <= 0 else out[i] / np.float32(repeat)
            out[i] = x - (c * np.float32(freq) + np.float32(present))
    return ids, out


def dry_repeat_limit(window, breakers):
    """Tokens after the most recent sequence breaker (len(window) when none)."""
    L = len(window)
    for i in range(L):  # i tokens back from the end
        longest = -1
        for b in breakers:
            tail = list(b[1:])
            if b[0] == window[L - 1 - i] and len(tail) <= i and len(tail) > longest:
                if all(tail[o] == window[L - i + o] for o in range(len(tail))):
                    longest = len(tail)
        if longest >= 0:
            return i - longest
    return L


def dry(ids, logits, window, breakers, multiplier, base, allowed):
    """For each earlier end of the window's current suffix, penalize the token that followed it."""
    L = len(window)
    out = np.array(logits, np.float32)
    if multiplier == 0.0 or L <= allowed:
        return ids, out
    limit = dry_repeat_limit(list(window), breakers)
    if limit < allowed:
        return ids, out
    best = {}
    for j in range(L - 1):  # an occurrence ending at j, followed by window[j + 1]
        n = 0
        while n <= j and window[j - n] == window[L - 1 - n]:
            n += 1
        n = min(n, limit)
        if n >= allowed:
            t = int(window[j + 1])
            best[t] = max(best.get(t, -1), n)
    singles = {b[0] for b in breakers if len(b) == 1}
    max_exp = int(88.7228391 / math.log(base)) if base > 1.000001 else 0
    for i, t in enumerate(ids):
        if int(t) in best and int(t) not in singles:
            e = best[int(t)] - allowed
            if max_exp > 0:
                e = min(e, max_exp)
            out[i] = out[i] - np.float32(multiplier * base**e)
    return ids, out


def top_n_sigma(ids, logits, n):
    x = np.array(logits, np.float32)
    if n <= 0 or len(x) <= 1:
        return ids, x
    fin = x[~np.isneginf(x)].astype(np.float64)
    if fin.size == 0:
        return ids, x
    thr = fin.max() - n * fin.std()
    x[x < thr] = -np.inf
    return ids, x


def top_k(ids, logits, k):
    if k <= 0 or k >= len(ids):
        return ids, logits
    i, x = sort_desc(ids, logits)
    return i[:k], x[:k]


def top_p(ids, logits, p, min_keep=0):
    if p >= 1.0:
        return ids, logits
    i, x = sort_desc(ids, logits)
    cum = np.cumsum(softmax(x))
    for j in range(len(x)):
        if cum[j] >= p and j + 1 >= min_keep:
            return i[: j + 1], x[: j + 1]
    return i, x


def min_p(ids, logits, p, min_keep=0):
    if p <= 0.0 or len(ids) == 0:
        return ids, logits
    x = np.asarray(logits, np.float32)
    thr = np.float32(x.max()) + np.log(np.float32(p))
    keep = x >= thr
    if keep.sum() >= max(min_keep, 1):
        return ids[keep], x[keep]
    i, xs = sort_desc(ids, x)
    n = min(len(xs), max(int(keep.sum()), min_keep, 1))
    return i[:n], xs[:n]


def typical(ids, logits, p, min_keep=0):
    if p >= 1.0:
        return ids, logits
    q = softmax(logits)
    with np.errstate(divide="ignore"):
        logq = np.log(q)
    h = -np.sum(q[q > 0] * logq[q > 0])
    score = np.where(q > 0, np.abs(-logq - h), np.inf)
    o = np.argsort(score, kind="stable")
    cum = np.cumsum(q[o])
    last = len(o)
    for j in range(len(o)):
        if cum[j] > p and (min_keep == 0 or j >= min_keep - 1):
            last = j + 1
            break
    return ids[o[:last]], np.asarray(logits)[o[:last]]


def xtc(ids, logits, probability, threshold, min_keep, chance):
    """chance: the uniform draw llama.cpp makes (XTC acts when chance <= probability)."""
    if probability <= 0.0 or threshold > 0.5 or len(ids) < 2 or chance > probability:
        return ids, logits
    i, x = sort_desc(ids, logits)
    q = softmax(x)
    last = 0
    for j in range(len(q)):
        if q[j] >= threshold:
            last = j
        else:
            break
    if len(x) - last >= min_keep and last > 0:
        return i[last:], x[last:]
    return i, x


def temperature(ids, logits, t):
    x = np.array(logits, np.float32)
    t = np.float32(t)
    if t <= 0.0:
        j = int(np.argmax(x))  # the first maximum
        out = np.full_like(x, -np.inf)
        out[j] = x[j]
        return ids, out
    return ids, (x / np.float32(t)).astype(np.float32)


def dynatemp(ids, logits, t, delta, exponent):
    if delta <= 0.0:
        return temperature(ids, logits, t)
    if len(ids) <= 1:
        return ids, logits
    q = softmax(logits)
    h = -np.sum(q[q > 0] * np.log(q[q > 0]))
    lo, hi = max(0.0, t - delta), t + delta
    return temperature(ids, logits, lo + (hi - lo) * (h / math.log(len(ids))) ** exponent)


def dist(logits, u):
    """Position drawn for the uniform u: the first whose running probability reaches u."""
    q = softmax(logits)
    c = np.cumsum(q)
    return int(np.argmax((c >= u * c[-1]) & (q > 0)))


def mirostat1(ids, logits, mu, n_vocab, m=100):
    """Mirostat's candidate set for the current mu (before the draw)."""
    i, x = sort_desc(ids, np.asarray(logits, np.float64))
    mm = min(m, len(x))
    t = np.log(np.arange(2, mm + 1) / np.arange(1, mm))
    b = x[: mm - 1] - x[1:mm]
    s_hat = np.sum(t * b) / np.sum(t * t)
    eps = s_hat - 1
    k = ((eps * 2**mu) / (1 - n_vocab ** (-eps))) ** (1 / s_hat)
    k = max(int(k), 1) if np.isfinite(k) else 1
    k = min(k, len(x))
    return i[:k], x[:k]


def mirostat2(ids, logits, mu):
    i, x = sort_desc(ids, logits)
    q = softmax(x)
    with np.errstate(divide="ignore"):
        keep = -np.log2(q) <= mu
    n = max(1, int(np.argmin(keep)) if not keep.all() else len(x))
    return i[:n], x[:n]


def mirostat_mu(mu, p_chosen, tau, eta):
    return mu - eta * (-math.log2(p_chosen) - tau)


def chain(logits, params, history=(), breakers=(), eog=(), xtc_chance=0.0, n_ctx=None):
    """The candidate set (ids, probs) that the final draw samples from (mirostat off)."""
    p = params
    x = np.asarray(logits, np.float32)
    pairs = list(p.logit_bias) + ([(t, -math.inf) for t in eog] if p.ignore_eos else [])
    x = logit_bias(x, [(t, b) for t, b in pairs if 0 <= t < len(x)])
    ids = np.arange(len(x))
    rl = n_ctx if p.repeat_last_n == -1 else p.repeat_last_n
    dl = n_ctx if p.dry_penalty_last_n == -1 else p.dry_penalty_last_n
    hist = list(history)
    for name in p.samplers:
        if name == "penalties" and rl > 0 and hist:
            ids, x = penalties(ids, x, hist[-rl:], p.repeat_penalty, p.frequency_penalty, p.presence_penalty)
        elif name == "dry" and dl > 0:
            ids, x = dry(ids, x, hist[-dl:], breakers, p.dry_multiplier, p.dry_base, p.dry_allowed_length)
        elif name == "top_n_sigma":
            ids, x = top_n_sigma(ids, x, p.top_n_sigma)
        elif name == "top_k":
            ids, x = top_k(ids, x, p.top_k)
        elif name == "typ_p":
            ids, x = typical(ids, x, p.typical_p, p.min_keep)
        elif name == "top_p":
            ids, x = top_p(ids, x, p.top_p, p.min_keep)
        elif name == "min_p":
            ids, x = min_p(ids, x, p.min_p, p.min_keep)
        elif name == "xtc":
            ids, x = xtc(ids, x, p.xtc_probability, p.xtc_threshold, p.min_keep, xtc_chance)
        elif name == "temperature":
            ids, x = dynatemp(ids, x, p.temperature, p.dynatemp_range, p.dynatemp_exponent)
    return ids, softmax(x)
