"""Rotary position embedding (RoPE) with ggml_rope's semantics, in place on q or k.

x (n_tokens, n_heads, head_dim) float32; positions int32 (n_tokens,). Only the first n_dims of
each head rotate; the rest pass through. Pair i (0 <= i < n_dims/2) turns by
    theta_i = pos * freq_scale * freq_base^(-2i/n_dims)   [/ freq_factors[i] if given]
  normal ordering (LLAMA_ROPE_TYPE_NORM, llama):         pairs (2i, 2i+1)
  NeoX ordering (LLAMA_ROPE_TYPE_NEOX, gemma3, qwen2/3):  pairs (i, i + n_dims/2)
and (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).

As in ggml_rope_cache_init, theta is float32 and advances by repeated multiplication
(theta *= theta_scale, theta_scale = powf(freq_base, -2/n_dims)), then cosf/sinf of
freq_scale * theta.

Scaling, as ggml_rope_ext applies it: freq_factors (llama3 scaling: the file's rope_freqs)
divide each pair's angle; YaRN (ext_factor != 0) blends the interpolated angle
freq_scale * theta with the extrapolated theta by a ramp over the pair index between the
correction dims (yarn_corr_dims), and scales cos and sin by
mscale * (1 + 0.1 ln(1 / freq_scale)); without YaRN they are scaled by mscale alone.

The cos/sin table depends only on positions, so a forward pass builds it once (rope_cache)
and every layer's q and k reuse it (rope_apply); rope() does both for one-off calls.
"""

import numpy as np
from numba import prange

from ._jit import exact_kernel, kernel, parallel_kernel


def rope_cache(cos, sin, positions, n_dims, freq_base, freq_scale, freq_factors=None, ext_factor=0.0,
               mscale=1.0, corr_lo=0.0, corr_hi=0.0):
    """cos, sin (n_tokens, n_dims//2) float32 = mscale' cos/sin(theta_i(pos)); freq_factors (n_dims//2,)
    or None; ext_factor, corr_lo, corr_hi: YaRN's (0: off); mscale: the attention factor.

    A plain-Python front of rope_table, so no Numba signature carries an omitted argument: a
    cached caller of a kernel with both omitted and explicit-None specializations of the same
    argument crashed when loaded from the cache (seen with Numba 0.68: segfault in rope())."""
    rope_table(cos, sin, positions, int(n_dims), float(freq_base), float(freq_scale), freq_factors,
               float(ext_factor), float(mscale), float(corr_lo), float(corr_hi))


# Without fastmath: with it, LLVM reassociates the theta recurrence (theta * ts * ts becomes
# theta * ts^2), and the angles drift from ggml's by up to 2e-4 rad at position 5000.
@exact_kernel
def rope_table(cos, sin, positions, n_dims, freq_base, freq_scale, freq_factors, ext_factor, mscale, corr_lo,
               corr_hi):
    """rope_cache's kernel: every argument explicit (freq_factors None or an array)."""
    half = n_dims // 2
    theta_scale = np.float32(freq_base) ** (np.float32(-2.0) / np.float32(n_dims))
    fs = np.float32(freq_scale)
    ext = np.float32(ext_factor)
    ms = np.float32(mscale)
    if ext != np.float32(0.0):
        ms = ms * (np.float32(1.0) + np.float32(0.1) * np.log(np.float32(1.0) / fs))
    lo = np.float32(corr_lo)
    span = max(np.float32(0.001), np.float32(corr_hi) - lo)
    for t in range(positions.shape[0]):
        theta = np.float32(positions[t])
        for i in range(half):
            # The float32 recurrence (not pow per i) is what ggml does; matching it keeps
            # our angles within an ulp or so of llama.cpp's even at large positions.
            th = theta
            if freq_factors is not None:
                th = th / np.float32(freq_factors[i])
            interp = fs * th
            if ext != np.float32(0.0):  # YaRN: ramp 1 below corr_lo (extrapolate), 0 above corr_hi
                y = (np.float32(i) - lo) / span
                mix = (np.float32(1.0) - min(np.float32(1.0), max(np.float32(0.0), y))) * ext
                interp = interp * (np.float32(1.0) - mix) + th * mix
            cos[t, i] = np.cos(interp) * ms
            sin[t, i] = np.sin(interp) * ms
            theta = theta * theta_scale


@parallel_kernel
def rope_apply(x, cos, sin, n_dims, neox):
    """Rotate x (n_tokens, n_heads, head_dim) in place by cos, sin (n_tokens, n_dims//2); neox: ordering."""
    n_heads = x.shape[1]
    half = n_dims // 2
    for t in prange(x.shape[0]):  # tokens are independent outputs
        c = cos[t]
        s = sin[t]
        for h in range(n_heads):
            v = x[t, h]  # (head_dim,); elements >= n_dims are left alone
            if neox:
                # (i, i + half): two contiguous half-vectors, vectorizes directly.
                for i in range(half):
                    x0 = v[i]
                    x1 = v[i + half]
                    v[i] = x0 * c[i] - x1 * s[i]
                    v[i + half] = x0 * s[i] + x1 * c[i]
            else:
                # (2i, 2i+1): interleaved pairs.
                for i in range(half):
                    x0 = v[2 * i]
                    x1 = v[2 * i + 1]
                    v[2 * i] = x0 * c[i] - x1 * s[i]
                    v[2 * i + 1] = x0 * s[i] + x1 * c[i]


def yarn_corr_dims(n_dims: int, n_ctx_orig: int, freq_base: float, beta_fast: float,
                   beta_slow: float) -> tuple[float, float]:
    """YaRN's correction range (low, high) of pair indices, in float32 as ggml computes it: the
    dims whose wavelength spans beta_fast, resp. beta_slow, rotations over n_ctx_orig tokens."""
    f = np.float32

    def dim(n_rot):
        return f(n_dims) * np.log(f(n_ctx_orig) / (f(n_rot) * f(2) * f(np.pi))) / (f(2) * np.log(f(freq_base)))

    return float(max(f(0), np.floor(dim(beta_fast)))), float(min(f(n_dims - 1), np.ceil(dim(beta_slow))))


@kernel
def rope(x, positions, n_dims, freq_base, freq_scale, neox):
    """Rotate x (n_tokens, n_heads, head_dim) in place at positions (n_tokens,) int32; one-off form."""
    half = n_dims // 2
    # One table per call, outside the hot loop (callers with many heads/layers use rope_cache).
    cos = np.empty((positions.shape[0], half), dtype=np.float32)
    sin = np.empty((positions.shape[0], half), dtype=np.float32)
    rope_table(cos, sin, positions, n_dims, freq_base, freq_scale, None, 0.0, 1.0, 0.0, 0.0)
    rope_apply(x, cos, sin, n_dims, neox)
