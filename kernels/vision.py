"""Kernels of a ViT image encoder (SigLIP-style, as llama.cpp's clip graph runs it): patch embedding,
LayerNorm, biased linear layers, non-causal multi-head attention, 2-D average pooling, and CLIP's quick
GELU (x * sigmoid(1.702 x), the MLP activation of `mlp` projectors whose file sets no clip.use_gelu).

Every kernel takes its outputs first, then inputs, then sizes; the caller owns every buffer.
Shapes:
  img     float32 (3, H, W)            normalized pixels, channel planes
  patches float32 (n_patch, 3*P*P)     one row per patch, rows in raster order (py * nx + px),
                                       columns in (channel, ky, kx) order: the conv weight's order
  x       float32 (n, k)               token rows
  w       float32 (m, k)               a linear layer's weight (out features x in features)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel, parallel_kernel
from .fastexp import fast_exp

_QUICK = np.float32(-1.702)


@parallel_kernel
def im2col_patches(patches, img, p):
    """patches (n_patch, 3*p*p) = the p x p patches of img (3, H, W), raster order; H, W multiples of p."""
    c_n, h, w = img.shape
    nx = w // p
    n = (h // p) * nx
    for i in prange(n):  # one output row per patch
        py, px = i // nx, i % nx
        for c in range(c_n):
            for ky in range(p):
                row = img[c, py * p + ky]
                base = (c * p + ky) * p
                for kx in range(p):
                    patches[i, base + kx] = row[px * p + kx]


@parallel_kernel
def linear(out, x, w, b):
    """out (n, m) = x (n, k) @ w (m, k).T + b (m,); b may be empty (no bias)."""
    n, k = x.shape
    m = w.shape[0]
    has_b = b.shape[0] > 0
    for t in prange(n):  # output rows
        xt = x[t]
        for j in range(m):
            wj = w[j]
            acc = np.float32(0.0)
            for i in range(k):
                acc += xt[i] * wj[i]
            out[t, j] = acc + b[j] if has_b else acc


@parallel_kernel
def layer_norm(out, x, w, b, eps):
    """out (n, k) = (x - mean) / sqrt(var + eps) * w (k,) + b (k,) per row of x (n, k); out may be x."""
    n, k = x.shape
    for t in prange(n):  # output rows
        xt = x[t]
        s = 0.0
        for i in range(k):
            s += np.float64(xt[i])
        mean = s / k
        v = 0.0
        for i in range(k):
            d = np.float64(xt[i]) - mean
            v += d * d
        scale = 1.0 / np.sqrt(v / k + eps)
        m32, s32 = np.float32(mean), np.float32(scale)
        for i in range(k):
            out[t, i] = (xt[i] - m32) * s32 * w[i] + b[i]


@parallel_kernel
def attention_full(out, q, k, v, scores, scale):
    """Non-causal attention: every query attends to every key of the same image.

    out, q, k, v (n, n_head, d); scores (n, n) caller-owned scratch (row t belongs to query t)."""
    n, n_head, d = q.shape
    for t in prange(n):  # one query row per iteration: scores[t] and out[t] are its own
        s = scores[t]
        for h in range(n_head):
            qv = q[t, h]
            mx = np.float32(-np.inf)
            for j in range(n):
                kv = k[j, h]
                acc = np.float32(0.0)
                for i in range(d):
                    acc += qv[i] * kv[i]
                acc *= scale
                s[j] = acc
                if acc > mx:
                    mx = acc
            tot = np.float32(0.0)
            for j in range(n):
                e = np.float32(np.exp(s[j] - mx))
                s[j] = e
                tot += e
            inv = np.float32(1.0) / tot
            o = out[t, h]
            for i in range(d):
                o[i] = 0.0
            for j in range(n):
                pj = s[j] * inv
                vv = v[j, h]
                for i in range(d):
                    o[i] += pj * vv[i]


@parallel_kernel
def avg_pool_tokens(out, x, side, kernel_size):
    """out (n_out, k) = the kernel_size x kernel_size averages of x (side*side, k), a raster grid of
    token rows; n_out = (side // kernel_size)^2 in raster order (no padding)."""
    k = x.shape[1]
    so = side // kernel_size
    inv = np.float32(1.0 / (kernel_size * kernel_size))
    for o in prange(so * so):  # output tokens
        oy, ox = o // so, o % so
        for i in range(k):
            out[o, i] = 0.0
        for dy in range(kernel_size):
            for dx in range(kernel_size):
                r = x[(oy * kernel_size + dy) * side + ox * kernel_size + dx]
                for i in range(k):
                    out[o, i] += r[i]
        for i in range(k):
            out[o, i] *= inv


@parallel_kernel
def gelu_quick(out, x):
    """out (n, k) = x * sigmoid(1.702 x) elementwise (llama.cpp's GELU_QUICK_COEF); out may be x."""
    n, k = x.shape
    for t in prange(n):  # output rows
        xt, ot = x[t], out[t]
        for i in range(k):
            v = xt[i]
            ot[i] = v / (np.float32(1.0) + fast_exp(_QUICK * v))
