"""GGML blocks to an affine integer form, at load time (NumPy, not a hot path).

Every supported quantized type is rewritten as unsigned integers with a scale and an
offset per sub-block of `bs` weights:  w = scale * q + offset.
Signed codes are shifted into unsigned ones (Q8_0: q + 128, offset -128 * d), so the
matmul kernels need a single u8 x s8 integer dot product for every type. The result
feeds `kernels.packing`, which interleaves rows for the SIMD kernels. The IQ1/IQ2/IQ3, TQ and
MXFP4 formats are written in this form by `kernels.unpack_iq` (see there for what it costs).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels.unpack_iq import IQ_TYPES, affine_parts

# IQ4_NL / IQ4_XS code book (non-linear 4-bit values).
IQ4_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int16)


class Affine(NamedTuple):
    q: np.ndarray  # uint8 (n_rows, k): unsigned codes
    scale: np.ndarray  # float32 (n_rows, k // bs)
    offset: np.ndarray  # float32 (n_rows, k // bs)
    bs: int  # weights per scale: 32, or 16 for Q2_K/Q3_K/Q6_K/IQ2_XS/IQ2_S/IQ1_M
    bits: int  # codes fit this many bits (4 -> nibble-packed layout, else bytes)
    sym: float  # c when offset == c * scale for every sub-block (symmetric types), else 0


def _f16(b: np.ndarray) -> np.ndarray:
    """(nb, 2) uint8 -> (nb, 1) float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def _nibbles32(qs: np.ndarray) -> np.ndarray:
    """(nb, 16) bytes -> (nb, 32) codes: low nibbles are weights 0-15, high ones 16-31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _k4_scale_min(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K 12-byte packing of eight 6-bit scales and mins -> (nb, 8) each."""
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([d & 63, (md & 0x0F) | ((d >> 6) << 4)], axis=-1)
    mn = np.concatenate([m & 63, (md >> 4) | ((m >> 6) << 4)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _blocks(data: np.ndarray, qtype: T) -> np.ndarray:
    bsz, tsz = GGML_QUANT_SIZES[qtype]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] % tsz:
        raise ValueError(f"{qtype.name}: expected uint8 rows of whole {tsz}-byte blocks, got {data.dtype} {data.shape}")
    return np.ascontiguousarray(data).reshape(-1, tsz)


def to_affine(data: np.ndarray, qtype: T) -> Affine:
    """Quantized rows (n_rows, row_bytes) uint8 -> Affine form with the same values."""
    qtype = T(qtype)
    n = data.shape[0]
    b = _blocks(data, qtype)
    nb = b.shape[0]
    if qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        d = _f16(b[:, 0:2])
        has_min = qtype in (T.Q4_1, T.Q5_1)
        m = _f16(b[:, 2:4]) if has_min else None
        p = 4 if has_min else 2
        if qtype in (T.Q5_0, T.Q5_1):
            qh = np.ascontiguousarray(b[:, p : p + 4]).view(np.uint32)
            bits = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)
            q = _nibbles32(b[:, p + 4 :]) | (bits << 4)
            off = m if has_min else -16 * d
            bits_out, sym = 5, 0.0 if has_min else -16.0
        else:
            q = _nibbles32(b[:, p:])
            off = m if has_min else -8 * d
            bits_out, sym = 4, 0.0 if has_min else -8.0
        return _rows(q, d, off, n, 32, bits_out, sym)
    if qtype == T.Q8_0:
        d = _f16(b[:, 0:2])
        q = (b[:, 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        return _rows(q, d, -128 * d, n, 32, 8, -128.0)
    if qtype == T.IQ4_NL:
        d = _f16(b[:, 0:2])
        q = (IQ4_VALUES[_nibbles32(b[:, 2:])] + 128).astype(np.uint8)
        return _rows(q, d, -128 * d, n, 32, 8, -128.0)
    if qtype == T.IQ4_XS:
        d = _f16(b[:, 0:2])
        sh = np.ascontiguousarray(b[:, 2:4]).view(np.uint16).astype(np.int32)
        sl = b[:, 4:8].astype(np.int32)
        ib = np.arange(8)
        ls = ((sl[:, ib // 2] >> (4 * (ib % 2))) & 0x0F) | (((sh >> (2 * ib)) & 3) << 4)
        dl = d * (ls - 32).astype(np.float32)  # (nb, 8)
        q = (IQ4_VALUES[_nibbles32(b[:, 8:].reshape(nb * 8, 16))] + 128).astype(np.uint8)
        return _rows(q.reshape(nb, 256), dl, -128 * dl, n, 32, 8, -128.0)
    if qtype in (T.Q4_K, T.Q5_K):
        d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
        sc, mn = _k4_scale_min(b[:, 4:16])
        if qtype == T.Q4_K:
            qs, hi = b[:, 16:144], None
        else:
            qh, qs = b[:, 16:48], b[:, 48:176]
            hi = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # (nb, 8, 32)
        qs = qs.reshape(nb, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
        q = (qs & 0x0F).reshape(nb, 8, 32)
        if hi is not None:
            q = q | (hi << 4)
        return _rows(q.reshape(nb, 256), d * sc, -(dmin * mn), n, 32, 4 if hi is None else 5)
    if qtype == T.Q6_K:
        ql, qh = b[:, 0:128].reshape(nb, 2, 64), b[:, 128:192].reshape(nb, 2, 32)
        sc = b[:, 192:208].view(np.int8).astype(np.float32)
        d = _f16(b[:, 208:210])
        lo = np.concatenate([ql[..., :32] & 0x0F, ql[..., 32:] & 0x0F, ql[..., :32] >> 4, ql[..., 32:] >> 4], axis=-1)
        hi = np.concatenate([(qh >> s) & 3 for s in (0, 2, 4, 6)], axis=-1)
        q = (lo | (hi << 4)).reshape(nb, 256)
        dl = d * sc  # (nb, 16)
        return _rows(q, dl, -32 * dl, n, 16, 6, -32.0)
    if qtype == T.Q3_K:
        hmask, qs, s = b[:, 0:32], b[:, 32:96], b[:, 96:108]
        d = _f16(b[:, 108:110])
        ls = (s[:, 0:8, None] >> np.array([0, 4], np.uint8)).transpose(0, 2, 1).reshape(nb, 16)
        hs = (s[:, 8:12, None] >> np.array([0, 2, 4, 6], np.uint8)).transpose(0, 2, 1).reshape(nb, 16)
        sc = ((ls & 0x0F) | ((hs & 3) << 4)).astype(np.float32) - 32
        lo = (qs.reshape(nb, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
        hi = (hmask[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1
        q = lo.reshape(nb, 256) | (hi.reshape(nb, 256) << 2)  # 0..7 stands for -4..3
        dl = d * sc
        return _rows(q, dl, -4 * dl, n, 16, 3, -4.0)
    if qtype == T.Q2_K:
        s, qs = b[:, 0:16], b[:, 16:80]
        d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
        q = (qs.reshape(nb, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
        return _rows(q.reshape(nb, 256), d * (s & 0x0F), -(dmin * (s >> 4)), n, 16, 2)
    if qtype in IQ_TYPES:  # grid, ternary and MXFP4 formats: kernels.unpack_iq
        q, scale, bs, bits, sym = affine_parts(b, qtype)
        if q.min() < 0 or q.max() >= 1 << bits:
            raise AssertionError(f"{qtype.name}: codes outside {bits} bits")
        return _rows(q, scale, np.float32(sym) * scale, n, bs, bits, sym)
    raise ValueError(f"no integer form for GGML type {qtype.name}")


def _rows(q, scale, offset, n_rows, bs, bits, sym=0.0) -> Affine:
    """Blocks back to rows: q (nb, block) -> (n_rows, k); scales (nb, per block) -> (n_rows, k // bs)."""
    q = q.astype(np.uint8).reshape(n_rows, -1)
    k = q.shape[1]
    scale = np.broadcast_to(scale, offset.shape if scale.size < offset.size else scale.shape)
    return Affine(
        q,
        np.ascontiguousarray(scale, np.float32).reshape(n_rows, k // bs),
        np.ascontiguousarray(np.broadcast_to(offset, scale.shape), np.float32).reshape(n_rows, k // bs),
        bs,
        bits,
        sym,
    )
