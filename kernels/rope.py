"""Rotary position embedding (RoPE) with ggml_rope's semantics, in place on q or k.

x (n_tokens, n_heads, head_dim) float32; positions int32 (n_tokens,). Only the first n_dims of
each head rotate; the rest pass through. Pair i (0 <= i < n_dims/2) turns by
    theta_i = pos * freq_scale * freq_base^(-2i/n_dims)   [/ freq_factors[i] if given]
  normal ordering (LLAMA_ROPE_TYPE_NORM, llama):         pairs (2i, 2i+1)
  NeoX ordering (LLAMA_ROPE_TYPE_NEOX, gemma3, qwen2/3):  pairs (i, i + n_dims/2)
and (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).

As in ggml_rope_cache_init, theta is float32 and advances by repeated multiplication
(theta *= theta_scale, theta_scale = powf(freq_base, -2/n_dims)), then cosf/sinf of
freq_scale * theta. YaRN (ext_factor != 0) and attn_factor != 1 are not supported.

The cos/sin table depends only on positions, so a forward pass builds it once (rope_cache)
and every layer's q and k reuse it (rope_apply); rope() does both for one-off calls.
"""

import numpy as np
from numba import prange

from ._jit import exact_kernel, kernel, parallel_kernel


# Without fastmath: with it, LLVM reassociates the theta recurrence (theta * ts * ts becomes
# theta * ts^2), and the angles drift from ggml's by up to 2e-4 rad at position 5000.
@exact_kernel
def rope_cache(cos, sin, positions, n_dims, freq_base, freq_scale, freq_factors=None):
    """cos, sin (n_tokens, n_dims//2) float32 = cos/sin(theta_i(pos)); freq_factors (n_dims//2,) or None."""
    half = n_dims // 2
    theta_scale = np.float32(freq_base) ** (np.float32(-2.0) / np.float32(n_dims))
    fs = np.float32(freq_scale)
    for t in range(positions.shape[0]):
        theta = np.float32(positions[t])
        for i in range(half):
            # The float32 recurrence (not pow per i) is what ggml does; matching it keeps
            # our angles within an ulp or so of llama.cpp's even at large positions.
            th = theta
            if freq_factors is not None:
                th = th / np.float32(freq_factors[i])
            th = fs * th
            cos[t, i] = np.cos(th)
            sin[t, i] = np.sin(th)
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


@kernel
def rope(x, positions, n_dims, freq_base, freq_scale, neox):
    """Rotate x (n_tokens, n_heads, head_dim) in place at positions (n_tokens,) int32; one-off form."""
    half = n_dims // 2
    # One table per call, outside the hot loop (callers with many heads/layers use rope_cache).
    cos = np.empty((positions.shape[0], half), dtype=np.float32)
    sin = np.empty((positions.shape[0], half), dtype=np.float32)
    rope_cache(cos, sin, positions, n_dims, freq_base, freq_scale)
    rope_apply(x, cos, sin, n_dims, neox)
