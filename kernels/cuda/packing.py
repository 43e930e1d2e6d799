"""Weights prepared once at load time for the CUDA matmul kernels, and uploaded.

Every quantized type becomes the affine form of kernels.unpack (w = scale * q + offset per
sub-block of bs weights), laid out row-major in 32-bit words so the lanes of a warp read
consecutive words of one row (one coalesced 128-byte load per warp):
  codes  uint32 (n, k // 8) when codes fit 4 bits: nibble m of word i (bits 4m..4m+3) is
         weight 8i + m; uint32 (n, k // 4) otherwise (5 to 8-bit codes): byte m of
         word i is weight 4i + m. A word never straddles a sub-block (bs is 16 or 32).
  scale, offset  float32 (n, k // bs).
Float types (F32, F16, BF16) are widened to float32 w (n, k): exact, and one kernel path.
Why not the GGUF blocks themselves: each type would need its own matmul inner loop; the
affine form gives one loop for all, at a cost of 1-2 extra bits per weight for scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as T

from kernels.dequant import dequantize
from kernels.packing import FLOAT_TYPES
from kernels.unpack import to_affine

KIND_FLOAT, KIND_NIBBLE, KIND_BYTE = 0, 1, 2


@dataclass
class DeviceMatrix:
    """W (n, k) on the device; y = x @ W.T."""

    qtype: T
    n: int
    k: int
    kind: int  # KIND_FLOAT, KIND_NIBBLE or KIND_BYTE
    bs: int  # weights per scale (float types: k)
    codes: object  # device uint32 (n, k // 8) or (n, k // 4); (1, 1) for float types
    scale: object  # device float32 (n, k // bs); (1, 1) for float types
    offset: object
    w: object  # device float32 (n, k); (1, 1) for quantized types

    @property
    def nbytes(self) -> int:
        """Device bytes this matrix holds (a decode matvec reads all of them)."""
        return sum(int(a.size) * a.dtype.itemsize for a in (self.codes, self.scale, self.offset, self.w))


def host_form(rows: np.ndarray, qtype: T, n: int, k: int) -> tuple:
    """(kind, bs, codes, scale, offset, w) as host arrays from GGUF rows (n, row_bytes) uint8."""
    qtype = T(qtype)
    none_u32, none_f = np.zeros((1, 1), np.uint32), np.zeros((1, 1), np.float32)
    if qtype in FLOAT_TYPES:
        w = dequantize(rows, qtype).reshape(n, k)
        return KIND_FLOAT, k, none_u32, none_f, none_f, np.ascontiguousarray(w)
    a = to_affine(np.ascontiguousarray(rows).view(np.uint8).reshape(n, -1), qtype)
    if a.bits <= 4:
        packed = (a.q[:, 0::2] | (a.q[:, 1::2] << 4)).astype(np.uint8)  # byte j: weights 2j, 2j + 1
        kind = KIND_NIBBLE
    else:
        packed, kind = a.q, KIND_BYTE
    codes = np.ascontiguousarray(packed).view("<u4").astype(np.uint32)  # little-endian words
    return (kind, a.bs, codes, np.ascontiguousarray(a.scale), np.ascontiguousarray(a.offset), none_f)


def upload(rows: np.ndarray, qtype: T, n: int, k: int) -> DeviceMatrix:
    """GGUF rows (n, row_bytes) -> DeviceMatrix (one host-to-device copy per array)."""
    return upload_form(host_form(rows, qtype, n, k), qtype, n, k)


def upload_form(form: tuple, qtype: T, n: int, k: int) -> DeviceMatrix:
    """host_form()'s arrays -> DeviceMatrix; split so loaders prepare in threads and upload on one."""
    from numba import cuda

    kind, bs, codes, scale, offset, w = form
    return DeviceMatrix(T(qtype), n, k, kind, bs, cuda.to_device(codes), cuda.to_device(scale),
                        cuda.to_device(offset), cuda.to_device(w))
