"""kernels.iq_grids: the code books taken from gguf-py, checked against facts stated independently.

The digests are SHA-256 of llama.cpp's own tables (ggml-common.h: iq2xxs_grid, iq2xs_grid,
iq2s_grid, iq1s_grid as little-endian uint64 words, iq3xxs_grid and iq3s_grid as uint32
words, one signed byte per grid value), computed once from its source: the tables here, laid
out the same way, must hash the same. The sign table and MXFP4's scales are checked from
their definitions.
"""

import hashlib

import numpy as np
import pytest
from gguf import quants

from kernels import iq_grids as G

DIGESTS = {  # name: (table, entries, width, values, sha256 of the table's bytes)
    "iq2xxs": (G.IQ2_XXS_GRID, 256, 8, {8, 25, 43}, "05826b5d3e472a3a78f196be62ac78acf81df0f909626e12ab9fa2a5d490dd54"),
    "iq2xs": (G.IQ2_XS_GRID, 512, 8, {8, 25, 43}, "06e47aaca60b4dc1d9b5a3f34540437058a6b142b4d7a59d5ded769b4d1bf1de"),
    "iq2s": (G.IQ2_S_GRID, 1024, 8, {8, 25, 43}, "e1aa1473412b0552c2174c30ef22ab4073f6a181b85a17056e8249bd2932fd88"),
    "iq3xxs": (G.IQ3_XXS_GRID, 256, 4, {4, 12, 20, 28, 36, 44, 52, 62},
               "46e35f5a997efdee6c99ce57854c8a0d4f0ff8ca57e5e8a60c0793ea580acf5d"),
    "iq3s": (G.IQ3_S_GRID, 512, 4, set(range(1, 16, 2)), "bd1af4945a1717c65610b0284e4628b9a1ba3b306fae3a06f6e5f597356e349f"),
    "iq1s": (G.IQ1_GRID, 2048, 8, {-1, 0, 1}, "07540ffc1aeaf6ad4d97e96b0fcc765aae39671d4ae4a27bbd0e796fde167c6a"),
}


@pytest.mark.parametrize("name", DIGESTS)
def test_grid_is_llama_cpps_table(name):
    table, entries, width, values, digest = DIGESTS[name]
    assert table.dtype == np.int8 and table.shape == (entries, width) and table.flags.c_contiguous
    assert set(np.unique(table).tolist()) == values
    assert len(np.unique(table, axis=0)) == entries  # a code book has no repeated entry
    assert hashlib.sha256(table.tobytes()).hexdigest() == digest


def test_first_entries_as_ggml_common_lists_them():
    """iq2xxs_grid[1] = 0x080808080808082b, iq3s_grid[3] = 0x0101010b, iq1s_grid[1] = 0xffffffffffffff01."""
    np.testing.assert_array_equal(G.IQ2_XXS_GRID[1], [43, 8, 8, 8, 8, 8, 8, 8])
    np.testing.assert_array_equal(G.IQ3_S_GRID[3], [11, 1, 1, 1])
    np.testing.assert_array_equal(G.IQ1_GRID[1], [1, -1, -1, -1, -1, -1, -1, -1])


def test_ksigns_complete_seven_bits_with_even_parity():
    i = np.arange(128)
    assert np.array_equal(G.KSIGNS & 127, i)
    popcount = np.unpackbits(G.KSIGNS[:, None], axis=1).sum(axis=1)
    assert np.all(popcount % 2 == 0)
    assert G.KSIGNS.tobytes() == quants.IQ2_XXS.ksigns


def test_mxfp4_scales_and_levels():
    """E8M0_HALF[e] = 2^(e - 128) for every exponent byte; the levels are the doubled e2m1 values."""
    want = np.ldexp(1.0, np.arange(256) - 128)
    np.testing.assert_array_equal(G.E8M0_HALF.astype(np.float64), want)
    e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])  # OCP MX spec: the positive FP4 (E2M1) values
    np.testing.assert_array_equal(G.E2M1_DOUBLED, np.concatenate([2 * e2m1, -2 * e2m1]))
    assert tuple(G.E2M1_DOUBLED) == quants.MXFP4.kvalues
