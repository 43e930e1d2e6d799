"""Code books of the IQ1/IQ2/IQ3 formats, the sign table of IQ2/IQ3, and MXFP4's scales and levels.

The grids are data of the formats: each entry is 8 (IQ1, IQ2) or 4 (IQ3) small integers that
a grid index selects. They are taken once, at import, from gguf-py (the oracle these kernels
are tested against, which packs them in hexadecimal) and kept here as small signed integers:
  IQ1_S / IQ1_M  (2048, 8)  values -1, 0, 1
  IQ2_XXS        (256, 8)   values 8, 25, 43
  IQ2_XS         (512, 8)   same values
  IQ2_S          (1024, 8)  same values
  IQ3_XXS        (256, 4)   values 4, 12, 20, 28, 36, 44, 52, 62
  IQ3_S          (512, 4)   values 1, 3, ..., 15
tests/test_iq_grids.py checks them against facts of the formats stated independently.

KSIGNS: IQ2_XXS, IQ2_XS and IQ3_XXS store 7 sign bits per 8 weights; the 8th sign makes the
count of negative signs even. KSIGNS[i] (128 bytes) is i with that parity bit as bit 7;
computed here, not copied.

MXFP4: E8M0_HALF[e] (256 float32) is the block scale of exponent byte e, half of 2^(e - 127),
as ggml forms it (bits 0x00200000 << e for e < 2, else (e - 1) << 23: 2^(e - 128) for every e);
E2M1_DOUBLED (16) are the e2m1 values doubled (integers up to +-12; code 8 is a second zero).
"""

from __future__ import annotations

import numpy as np
from gguf import quants


def _grid(cls) -> np.ndarray:
    """gguf's float32 grid of one IQ class as a C-contiguous int8 (entries, width) table."""
    cls.init_grid()
    g = np.asarray(cls.grid, np.float32).reshape(cls.grid_shape)
    table = g.astype(np.int8)
    if not np.array_equal(table.astype(np.float32), g):
        raise ValueError(f"{cls.__name__}: grid values are not small integers")
    return np.ascontiguousarray(table)


IQ1_GRID = _grid(quants.IQ1_S)  # IQ1_M reads the same grid
IQ2_XXS_GRID = _grid(quants.IQ2_XXS)
IQ2_XS_GRID = _grid(quants.IQ2_XS)
IQ2_S_GRID = _grid(quants.IQ2_S)
IQ3_XXS_GRID = _grid(quants.IQ3_XXS)
IQ3_S_GRID = _grid(quants.IQ3_S)

_I = np.arange(128, dtype=np.int64)
_PARITY = sum((_I >> b) & 1 for b in range(7)) & 1
KSIGNS = (_I | (_PARITY << 7)).astype(np.uint8)

_E = np.arange(256, dtype=np.uint32)
E8M0_HALF = np.where(_E < 2, np.uint32(0x00200000) << _E, (_E - np.uint32(1)) << np.uint32(23)).astype(
    np.uint32).view(np.float32)
E2M1_DOUBLED = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.int8)

# The weight each IQ1 grid entry's offset delta moves by: +-1/8 (sign from a header bit).
IQ1_DELTA = np.float32(0.125)
