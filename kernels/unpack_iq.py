"""The grid, ternary and MXFP4 formats in kernels.unpack's affine form  w = scale * q + offset.

Every one of them is symmetric (offset = sym * scale, so the layout stores no offset) with
unsigned integer codes; the value each weight had in gguf is exactly scale * (q + sym):
  type      code q                      scale (per bs weights)       sym  bits  bs
  IQ2_XXS   s * g + 43, g in 8/25/43    (d * (0.5 + ls)) * 0.25      -43   7    32
  IQ2_XS    same                        same                         -43   7    16
  IQ2_S     same                        same                         -43   7    16
  IQ3_XXS   s * g / 2 + 31 (g even)     2 * ((d * (0.5 + ls)) * 0.5)  -31   6    32
  IQ3_S     s * g + 15, g odd 1..15     d * (1 + 2 s)                -15   5    32
  IQ1_S     8 (g + delta) + 9           (d * (2 s + 1)) / 8           -9   5    32
  IQ1_M     same                        same                          -9   5    16
  TQ1_0     t + 1, t in -1..1           d                             -1   2    32
  TQ2_0     t + 1, t in -1..2           d                             -1   2    32
  MXFP4     2 e2m1 + 12 (0..24)         2^(e - 128)                  -12   5    32
(s: +-1 sign of the weight; g: code-book value, kernels.iq_grids; delta: +-1/8.)
The scales are gguf's own float32 sub-block scales, times a power of two where stated
(exact), so scale * q + offset computed in float64 and rounded once is gguf's value.

Honest cost: these formats spend 1.6-4.25 bits per weight in GGUF; the packed layout reads
more. IQ2_* codes need 7 bits (the code book is not uniform), so they travel as bytes (width
8): 8.5-9 bits per weight against 2.06-2.56. IQ3_XXS reads 6.5 bits (3.06 in GGUF), IQ3_S,
IQ1_* and MXFP4 5.5-6 (3.44, 1.56-1.75, 4.25), TQ* nibbles 4.5 (1.69, 2.06). The gain is one
integer matmul loop for every type; a per-type grid-lookup kernel would read fewer bytes.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

from kernels import iq_grids as G

IQ_TYPES = (T.IQ1_S, T.IQ1_M, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.TQ1_0, T.TQ2_0, T.MXFP4)


def _f16(b: np.ndarray) -> np.ndarray:
    """(nb, 2) uint8 -> (nb, 1) float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def _bits8(v: np.ndarray) -> np.ndarray:
    """(..., m) integers -> (..., m, 8) their bits 0..7 (sign bits: 1 = negative)."""
    return ((v[..., None].astype(np.int32) >> np.arange(8)) & 1).astype(np.int16)


def _signed_codes(g: np.ndarray, neg: np.ndarray, mul: int, add: int) -> np.ndarray:
    """(+-g) * mul + add as int16 (the caller checks the range)."""
    v = g.astype(np.int16) * np.int16(mul)
    return np.where(neg != 0, -v, v) + np.int16(add)


def _nibbles(s: np.ndarray) -> np.ndarray:
    """(nb, m) bytes -> (nb, 2 m): low nibble of byte j at 2 j, high nibble at 2 j + 1."""
    return np.stack([s & 15, s >> 4], axis=-1).reshape(s.shape[0], -1).astype(np.int32)


def _iq2_scale(d: np.ndarray, ls: np.ndarray) -> np.ndarray:
    return (d * (np.float32(0.5) + ls.astype(np.float32))) * np.float32(0.25)


def affine_parts(b: np.ndarray, qtype: T):
    """Blocks (nb, type_size) uint8 -> (q (nb, 256 | 32) int16, scale (nb, per block) float32, bs, bits, sym)."""
    nb = b.shape[0]
    if qtype == T.IQ2_XXS:
        d = _f16(b[:, 0:2])
        aux = np.ascontiguousarray(b[:, 2:]).view("<u4").reshape(nb, 8, 2)[..., 1].astype(np.int64)
        idx = b[:, 2:].reshape(nb, 8, 8)[:, :, 0:4]
        signs = G.KSIGNS[(aux[..., None] >> np.array([0, 7, 14, 21])) & 127]  # (nb, 8, 4)
        q = _signed_codes(G.IQ2_XXS_GRID[idx], _bits8(signs), 1, 43)
        return q.reshape(nb, 256), _iq2_scale(d, aux >> 28), 32, 7, -43.0
    if qtype == T.IQ2_XS:
        d = _f16(b[:, 0:2])
        v = np.ascontiguousarray(b[:, 2:66]).view("<u2").astype(np.int64)  # (nb, 32)
        q = _signed_codes(G.IQ2_XS_GRID[v & 511], _bits8(G.KSIGNS[v >> 9]), 1, 43)
        return q.reshape(nb, 256), _iq2_scale(d, _nibbles(b[:, 66:74])), 16, 7, -43.0
    if qtype == T.IQ2_S:
        d = _f16(b[:, 0:2])
        hi = ((b[:, 66:74, None].astype(np.int64) >> np.array([0, 2, 4, 6])) & 3).reshape(nb, 32)
        idx = b[:, 2:34].astype(np.int64) | (hi << 8)
        q = _signed_codes(G.IQ2_S_GRID[idx], _bits8(b[:, 34:66]), 1, 43)
        return q.reshape(nb, 256), _iq2_scale(d, _nibbles(b[:, 74:82])), 16, 7, -43.0
    if qtype == T.IQ3_XXS:
        d = _f16(b[:, 0:2])
        aux = np.ascontiguousarray(b[:, 66:98]).view("<u4").astype(np.int64)  # (nb, 8)
        db = (d * (np.float32(0.5) + (aux >> 28).astype(np.float32))) * np.float32(0.5)
        signs = G.KSIGNS[(aux[..., None] >> np.array([0, 7, 14, 21])) & 127]  # (nb, 8, 4)
        g = G.IQ3_XXS_GRID[b[:, 2:66]].reshape(nb, 8, 4, 8) // 2  # every value is even
        q = _signed_codes(g, _bits8(signs), 1, 31)
        return q.reshape(nb, 256), db * np.float32(2.0), 32, 6, -31.0
    if qtype == T.IQ3_S:
        d = _f16(b[:, 0:2])
        hi = ((b[:, 66:74, None].astype(np.int64) >> np.arange(8)) & 1).reshape(nb, 64)
        g = G.IQ3_S_GRID[b[:, 2:66].astype(np.int64) | (hi << 8)].reshape(nb, 32, 8)
        q = _signed_codes(g, _bits8(b[:, 74:106]), 1, 15)
        db = d * (1 + 2 * _nibbles(b[:, 106:110])).astype(np.float32)
        return q.reshape(nb, 256), db, 32, 5, -15.0
    if qtype in (T.IQ1_S, T.IQ1_M):
        if qtype == T.IQ1_S:
            d = _f16(b[:, 0:2])
            qh = np.ascontiguousarray(b[:, 34:50]).view("<u2").astype(np.int64)  # (nb, 8)
            dl = d * (2 * ((qh >> 12) & 7) + 1).astype(np.float32)
            hi = ((qh[..., None] >> np.array([0, 3, 6, 9])) & 7).reshape(nb, 32)
            idx, neg = b[:, 2:34].astype(np.int64) | (hi << 8), np.repeat(qh >> 15, 4, axis=1)
            bs = 32
        else:
            sc = np.ascontiguousarray(b[:, 48:56]).view("<u2").astype(np.int64)  # (nb, 4)
            hb = ((sc >> 12) << np.array([0, 4, 8, 12])).sum(axis=1).astype(np.uint16)
            d = hb.view(np.float16).astype(np.float32).reshape(nb, 1)
            dl = d * (2 * ((sc[..., None] >> np.array([0, 3, 6, 9])) & 7).reshape(nb, 16) + 1).astype(np.float32)
            nib = _nibbles(b[:, 32:48])  # (nb, 32): 3 index bits and the delta sign per 8 weights
            idx, neg = b[:, 0:32].astype(np.int64) | ((nib & 7) << 8), nib >> 3
            bs = 16
        g = G.IQ1_GRID[idx].astype(np.int16) * 8 + np.where(neg != 0, -1, 1)[..., None].astype(np.int16) + 9
        return g.reshape(nb, 256), dl * np.float32(0.125), bs, 5, -9.0
    if qtype == T.TQ1_0:
        p3 = np.array([1, 3, 9, 27, 81], np.int32)[:, None]

        def digits(v, n):  # (nb, m) bytes -> (nb, n * m): digit k of byte j at k * m + j
            return ((((v[:, None, :].astype(np.int32) * p3[:n]) & 255) * 3) >> 8).reshape(nb, -1)

        q = np.concatenate([digits(b[:, 0:32], 5), digits(b[:, 32:48], 5), digits(b[:, 48:52], 4)], axis=1)
        return q.astype(np.int16), np.repeat(_f16(b[:, 52:54]), 8, axis=1), 32, 2, -1.0
    if qtype == T.TQ2_0:
        q = (b[:, 0:64].reshape(nb, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
        return q.reshape(nb, 256).astype(np.int16), np.repeat(_f16(b[:, 64:66]), 8, axis=1), 32, 2, -1.0
    if qtype == T.MXFP4:
        q = G.E2M1_DOUBLED[np.concatenate([b[:, 1:17] & 15, b[:, 1:17] >> 4], axis=1)].astype(np.int16) + 12
        return q, G.E8M0_HALF[b[:, 0:1]], 32, 5, -12.0
    raise ValueError(f"no integer form for GGML type {qtype.name}")
