"""Plain-NumPy references for kernels/{norm,activation,rope,attention}.py, in float64.

Written from the formulas (and, for RoPE's angles, from ggml_rope_cache_init), not from the
kernels, so that a shared mistake is unlikely. Inputs may be float32; results are float64.
"""

import numpy as np


def rms_norm(x, w, eps):
    """x (n_rows, n) / sqrt(mean(x^2) + eps) * w (n,)."""
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * np.asarray(w, np.float64)


def silu(x):
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):  # exp(-x) = inf for x < -709: x / inf = -0, correct
        return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def swiglu(gate, up):
    return silu(gate) * np.asarray(up, np.float64)


def geglu(gate, up):
    return gelu_tanh(gate) * np.asarray(up, np.float64)


def softmax(x):
    """Row-wise (last axis) softmax."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def rope_angles(positions, n_dims, freq_base, freq_scale, freq_factors=None, ggml_float32=True):
    """theta (n_tokens, n_dims//2) in float64.

    ggml_float32=True reproduces ggml's float32 recurrence theta *= powf(base, -2/n_dims)
    (the angle llama.cpp actually uses); False gives the exact pos*scale*base^(-2i/n_dims).
    """
    half = n_dims // 2
    pos = np.asarray(positions)
    ff = np.ones(half) if freq_factors is None else np.asarray(freq_factors, np.float64)
    if not ggml_float32:
        i = np.arange(half, dtype=np.float64)
        return pos[:, None].astype(np.float64) * freq_scale * freq_base ** (-2.0 * i / n_dims) / ff
    theta_scale = np.float32(freq_base) ** (np.float32(-2.0) / np.float32(n_dims))
    out = np.empty((len(pos), half))
    theta = pos.astype(np.float32)
    for i in range(half):
        th = (theta / np.float32(ff[i])).astype(np.float32)
        out[:, i] = np.float32(freq_scale) * th
        theta = (theta * theta_scale).astype(np.float32)
    return out


def rope_yarn_table(positions, n_dims, freq_base, freq_scale, freq_factors, ext_factor, mscale, corr_lo, corr_hi):
    """(cos, sin) (n_tokens, n_dims//2) float64 of ggml_rope_ext with YaRN: the angle blends
    theta_extrap = theta / ff and freq_scale * theta_extrap by ramp(i) * ext_factor, with
    ramp = 1 - clip((i - lo) / max(0.001, hi - lo), 0, 1); magnitudes mscale * (1 + 0.1 ln(1/freq_scale))."""
    extrap = rope_angles(positions, n_dims, freq_base, 1.0, freq_factors)
    i = np.arange(n_dims // 2, dtype=np.float64)
    ramp = 1.0 - np.clip((i - corr_lo) / max(0.001, corr_hi - corr_lo), 0.0, 1.0)
    mix = ramp * ext_factor
    th = freq_scale * extrap * (1.0 - mix) + extrap * mix
    m = mscale * (1.0 + 0.1 * np.log(1.0 / freq_scale)) if ext_factor else mscale
    return m * np.cos(th), m * np.sin(th)


def rope(x, positions, n_dims, freq_base, freq_scale, neox, freq_factors=None, ggml_float32=True):
    """RoPE of x (n_tokens, n_heads, head_dim): a new float64 array (the input is not changed)."""
    y = np.array(x, np.float64)
    th = rope_angles(positions, n_dims, freq_base, freq_scale, freq_factors, ggml_float32)
    c = np.cos(th)[:, None, :]  # (n_tokens, 1, half): broadcast over heads
    s = np.sin(th)[:, None, :]
    half = n_dims // 2
    if neox:
        i0 = np.arange(half)
        i1 = i0 + half
    else:
        i0 = 2 * np.arange(half)
        i1 = i0 + 1
    x0 = y[:, :, i0].copy()
    x1 = y[:, :, i1].copy()
    y[:, :, i0] = x0 * c - x1 * s
    y[:, :, i1] = x0 * s + x1 * c
    return y


def attention(q, k_cache, v_cache, q_pos, kv_len, scale, window, softcap):
    """Causal GQA attention with an explicit mask, in float64: (n_tokens, n_head, head_dim)."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k_cache, np.float64)[:, :kv_len]
    v = np.asarray(v_cache, np.float64)[:, :kv_len]
    n_tokens, n_head, head_dim = q.shape
    n_rep = n_head // k.shape[0]
    k = np.repeat(k, n_rep, axis=0)  # (n_head, kv_len, head_dim): head h -> kv head h // n_rep
    v = np.repeat(v, n_rep, axis=0)
    scores = np.einsum("thd,hjd->thj", q, k) * scale
    if softcap > 0:
        scores = softcap * np.tanh(scores / softcap)
    pq = np.asarray(q_pos, np.int64)[:, None]
    j = np.arange(kv_len)[None, :]
    visible = j <= pq
    if window > 0:
        visible &= (pq - j) < window
    out = np.zeros((n_tokens, n_head, head_dim))
    for t in range(n_tokens):
        cols = np.nonzero(visible[t])[0]
        if len(cols) == 0:
            continue
        p = softmax(scores[t][:, cols])  # (n_head, n_visible)
        out[t] = np.einsum("hj,hjd->hd", p, v[:, cols])
    return out


def f32_normal(rng, *shape, scale=1.0):
    """A C-contiguous float32 test input: standard normal values of the given shape, times scale."""
    return np.ascontiguousarray(rng.standard_normal(shape) * scale, dtype=np.float32)
