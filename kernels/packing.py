"""Weights prepared once at load time: rows interleaved in groups of 16 for the SIMD kernels.

Why interleave: with 16 rows side by side, one 512-bit `vpdpbusd` multiplies four weights
of each of 16 rows by the same four activations, and the 16 results land in 16 lanes:
no horizontal sums, one vector of outputs per row group.

Integer layout (every quantized type, through `kernels.unpack`):
  qs  uint8 (G, k // 32, 4 | 8, 16, 4)  per row group g and 32-weight block b: chunk c,
      row r, byte t holds weight k = 32 b + 4 c + t of row 16 g + r. Codes of 8 bits use
      one byte each (8 chunks, `width` 8). Narrower codes are nibble-packed (4 chunks; the
      high nibble holds weight k + 16), and codes of 5 or 6 bits keep their high bits in a
      plane of 64 or 128 bytes after the nibbles (`width` 5, 6): with one bit, byte
      (r, t) of the plane has bit c for chunk c's low nibble and bit 4 + c for its high
      nibble; with two bits, plane 0 holds bits 2c..2c+1 for the low nibbles and plane 1
      for the high ones. So the legacy and K types read no more code bits than their GGUF
      form; the grid, ternary and MXFP4 types read more (IQ2_* bytes for 2.06-2.56 bits: see
      kernels.unpack_iq, which states each one's cost).
  d, m float16 bits as uint16 (G, k // bs, 16)  scale and offset per row and bs-weight sub-block
      (bs = 32, or 16 for Q2_K/Q3_K/Q6_K/IQ2_XS/IQ2_S/IQ1_M): w = d * q + m. Half precision
      halves the scale traffic; it rounds sub-scales (d * sc, and the IQ types' d * (2 ls + 1)
      / 8 and the like) by at most 2^-11 relative. Every IQ, TQ and MXFP4 type is symmetric
      (no m), so that is its only rounding: |dw| <= 2^-11 |w| per weight, inside the 0.025
      ||w|| ||x|| bound of tests/oracles/matmul.py (0.0223 of it is the int8 activations).
      MXFP4's power-of-two scales are exact halves from 2^-24 to 2^15 (exponent bytes 104 to
      143); a larger one is refused (outside float16 range), a smaller one (weights under
      3.6e-7) rounds to zero.
Float layout (F32, F16, BF16): w (G, k, 16) with the file's own bits (see FLOAT_TYPES).
Padding rows (n up to a multiple of 16) are zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels.unpack import to_affine

ROWS = 16  # rows per group: lanes of one 512-bit int32/float32 vector
# Numba has no half-precision arrays: F16 bits travel as uint16, BF16 bits as int16
# (simd.load_f32x16 widens by dtype).
FLOAT_TYPES = {T.F32: np.float32, T.F16: np.uint16, T.BF16: np.int16}


@dataclass(frozen=True)
class PackedMatrix:
    """A weight matrix W (n, k) in the kernels' layout; y = x @ W.T."""

    qtype: T
    n: int
    k: int
    width: int  # code layout: 4 nibbles, 5/6 nibbles + high-bit plane, 8 bytes (0: float)
    bs: int  # weights per scale: 32 or 16 (0 for float types)
    sym: float  # symmetric types: offset = sym * scale, and m is not stored (0: m is stored)
    qs: np.ndarray  # uint8, flat (see module doc); empty for float types
    d: np.ndarray  # float16 bits, uint16 (G * k // bs * 16,)
    m: np.ndarray  # same shape as d
    w: np.ndarray  # float layout (G * k * 16,), empty for quantized types
    src_nbytes: int  # bytes of the tensor in the GGUF file

    @property
    def is_float(self) -> bool:
        return self.qtype in FLOAT_TYPES

    @property
    def nbytes(self) -> int:
        """Bytes a full matvec reads from the packed weights."""
        return self.qs.nbytes + self.d.nbytes + self.m.nbytes + self.w.nbytes


_EMPTY_U8 = np.zeros(0, np.uint8)
_EMPTY_F16 = np.zeros(0, np.uint16)


# Rows packed at a time. Every packed array is group-major (all of group 0, then group 1, ...), so
# a large matrix is packed a chunk of groups at a time into slices of its final arrays: the
# temporaries (the codes, their zero-padded and transposed copies, about 3x the chunk's size)
# stay small. Packing Gemma 3's 262,144-row output head whole cost 440 MB of transient memory
# at load (measured: peak RSS 1,288 MiB against 870 after).
CHUNK_ROWS = 8192


def pack(data: np.ndarray, qtype, n: int, k: int, consumed: Callable[[int, int], None] | None = None) -> PackedMatrix:
    """GGUF tensor data of a (n, k) matrix -> PackedMatrix.

    data: for quantized types uint8 (n, row_bytes) (or flat); for float types the values
    (n, k) as float32 / float16 / uint16 (bf16) or the raw uint8 bytes.
    consumed(r0, r1), when given, is called once rows [r0, r1) of data are no longer read (after
    each chunk of a large matrix): the loader lets the file's pages go there.
    """
    qtype = T(qtype)
    bsz, tsz = GGML_QUANT_SIZES[qtype]
    if k % bsz or (qtype not in FLOAT_TYPES and k % 32):
        raise ValueError(f"{qtype.name}: row length {k} is not a multiple of the block size {max(bsz, 32)}")
    row_bytes = k // bsz * tsz
    if data.nbytes != n * row_bytes:
        raise ValueError(f"{qtype.name}: {data.nbytes} bytes given for a ({n}, {k}) matrix, want {n * row_bytes}")
    if n <= CHUNK_ROWS:
        return _pack(np.ascontiguousarray(data), qtype, n, k)
    rows = np.ascontiguousarray(data).view(np.uint8).reshape(n, row_bytes)
    first = _pack(rows[:CHUNK_ROWS], qtype, CHUNK_ROWS, k)
    if consumed is not None:
        consumed(0, CHUNK_ROWS)
    g, g0 = -(-n // ROWS), CHUNK_ROWS // ROWS
    out = {}
    for name in ("qs", "d", "m", "w"):  # the whole matrix's arrays, each of g equal group slices
        a = getattr(first, name)
        per = a.size // g0
        out[name] = np.empty(per * g, a.dtype)
        out[name][: a.size] = a
    for r0 in range(CHUNK_ROWS, n, CHUNK_ROWS):
        r1 = min(n, r0 + CHUNK_ROWS)
        part = _pack(rows[r0:r1], qtype, r1 - r0, k)
        for name, a in out.items():
            per = a.size // g
            a[r0 // ROWS * per : r0 // ROWS * per + getattr(part, name).size] = getattr(part, name)
        if consumed is not None:
            consumed(r0, r1)
    return PackedMatrix(qtype, n, k, first.width, first.bs, first.sym, out["qs"], out["d"], out["m"], out["w"],
                        n * row_bytes)


def _pack(src: np.ndarray, qtype: T, n: int, k: int) -> PackedMatrix:
    """pack() of one chunk of rows (contiguous)."""
    bsz, tsz = GGML_QUANT_SIZES[qtype]
    row_bytes = k // bsz * tsz
    g = -(-n // ROWS)
    if qtype in FLOAT_TYPES:
        vals = src.view(np.uint8).view(FLOAT_TYPES[qtype]).reshape(n, k)
        w = np.zeros((g * ROWS, k), vals.dtype)
        w[:n] = vals
        w = np.ascontiguousarray(w.reshape(g, ROWS, k).transpose(0, 2, 1)).reshape(-1)
        return PackedMatrix(qtype, n, k, 0, 0, 0.0, _EMPTY_U8, _EMPTY_F16, _EMPTY_F16, w, src.nbytes)
    a = to_affine(src.view(np.uint8).reshape(n, row_bytes), qtype)
    width = 4 if a.bits <= 4 else a.bits if a.bits <= 6 else 8
    q = np.zeros((g * ROWS, k), np.uint8)
    q[:n] = a.q
    q = q.reshape(g, ROWS, k // 32, 32)
    if width == 8:  # (g, r, b, c*4+t) -> (g, b, c, r, t)
        qs = q.reshape(g, ROWS, k // 32, 8, 4).transpose(0, 2, 3, 1, 4).reshape(g, k // 32, 512)
    else:
        lo, hi = q[..., :16] & 15, q[..., 16:] & 15  # weights 0-15 and 16-31 of each block
        nib = (lo | (hi << 4)).reshape(g, ROWS, k // 32, 4, 4).transpose(0, 2, 3, 1, 4).reshape(g, k // 32, 256)
        parts = [nib]
        # (g, b, r, t, c): the high bits of weight 4c + t (low half) and 16 + 4c + t (high half)
        hl = (q[..., :16] >> 4).reshape(g, ROWS, k // 32, 4, 4).transpose(0, 2, 1, 4, 3).astype(np.uint16)
        hh = (q[..., 16:] >> 4).reshape(g, ROWS, k // 32, 4, 4).transpose(0, 2, 1, 4, 3).astype(np.uint16)
        if width == 5:
            plane = sum(hl[..., c] << c for c in range(4)) + sum(hh[..., c] << (4 + c) for c in range(4))
            parts.append(plane.astype(np.uint8).reshape(g, k // 32, 64))
        elif width == 6:
            for half in (hl, hh):
                plane = sum(half[..., c] << (2 * c) for c in range(4))
                parts.append(plane.astype(np.uint8).reshape(g, k // 32, 64))
        qs = np.concatenate(parts, axis=-1)
    d = _scales(a.scale, n, g)
    m = _EMPTY_F16 if a.sym else _scales(a.offset, n, g)
    return PackedMatrix(qtype, n, k, width, a.bs, a.sym, np.ascontiguousarray(qs).reshape(-1), d, m,
                        np.zeros(0, np.float32), src.nbytes)


def _scales(s: np.ndarray, n: int, g: int) -> np.ndarray:
    """(n, nbs) float32 -> (g, nbs, 16) float16 bits (uint16), flat; refuses values half cannot hold."""
    h = s.astype(np.float16)
    if not np.isfinite(h[np.isfinite(s)]).all():
        raise ValueError("a quantization scale is outside float16 range")
    out = np.zeros((g * ROWS, s.shape[1]), np.uint16)
    out[:n] = h.view(np.uint16)
    return np.ascontiguousarray(out.reshape(g, ROWS, -1).transpose(0, 2, 1)).reshape(-1)
