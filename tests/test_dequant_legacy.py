"""kernels.dequant_legacy, kernel by kernel, bit for bit against gguf.quants.dequantize.

The kernels are called directly, with their (out, blocks[, levels], n16) signature, on
sane blocks, on random bytes (NaN, inf and subnormal scales too) and on extreme halves; the
half decoder on every 16-bit pattern. (tests/test_dequant.py drives them through
kernels.dequant.dequantize, shapes and errors included.)
"""

import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from kernels import dequant_legacy as L
from tests.oracles.quant_blocks import BLOCK_CASES, LEGACY_TYPES, assert_same_bits, block_case, reference

KERNELS = {  # qtype -> (kernel, the arguments after out and blocks)
    T.Q4_0: (L.dequant_q4_0, (16,)), T.Q4_1: (L.dequant_q4_1, (16,)), T.Q5_0: (L.dequant_q5_0, (16,)),
    T.Q5_1: (L.dequant_q5_1, (16,)), T.Q8_0: (L.dequant_q8_0, (16,)), T.IQ4_NL: (L.dequant_iq4_nl, (L.IQ4_LEVELS, 16)),
}


def run_blocks(kernels: dict, qtype: T, blocks: np.ndarray, n_inner: int) -> np.ndarray:
    """out (n_blocks, block_size) of kernels[qtype] with trip count n_inner, NaN where it wrote nothing."""
    kernel, args = kernels[qtype]
    out = np.full((blocks.shape[0], GGML_QUANT_SIZES[qtype][0]), np.nan, np.float32)
    kernel(out, blocks, *args[:-1], n_inner)
    return out


def check_kernel(kernels: dict, qtype: T, case: str, n_blocks: int) -> None:
    """kernels[qtype] on block_case(case) equals gguf, with its trip count and with a larger one:
    the count is a run-time bound (see the module docs), capped so that no loop leaves its block."""
    blocks = block_case(case, qtype, np.random.default_rng(int(qtype) * 7 + len(case)), n_blocks)
    want = reference(blocks, qtype)
    for n_inner in (kernels[qtype][1][-1], 100):
        assert_same_bits(run_blocks(kernels, qtype, blocks, n_inner), want, f"{qtype.name} {case} {n_inner}")


@pytest.mark.parametrize("case", BLOCK_CASES)
@pytest.mark.parametrize("qtype", LEGACY_TYPES, ids=lambda t: t.name)
def test_block_kernels_equal_gguf(qtype, case):
    check_kernel(KERNELS, qtype, case, 37)


def test_every_half_converts_as_numpy_does():
    """Subnormals, +-0, +-inf and every NaN payload: dequant_f16 and dequant_bf16 on all 65536 patterns."""
    src = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    out = np.zeros(src.size, np.uint32)
    L.dequant_f16(out, src)
    np.testing.assert_array_equal(out, src.view(np.float16).astype(np.float32).view(np.uint32))
    L.dequant_bf16(out, src)
    np.testing.assert_array_equal(out, src.astype(np.uint32) << 16)


def test_header_readers():
    """f16_at and u32_at read little-endian fields at any byte offset of a block."""
    rng = np.random.default_rng(9)
    blocks = rng.integers(0, 256, (4, 12), dtype=np.uint8)
    for b, i in ((0, 0), (1, 3), (3, 8)):
        half = blocks[b, i:i + 2].copy().view("<f2").astype(np.float32)[0]
        got = np.float32(L.f16_at(blocks, b, i))
        assert got.view(np.uint32) == half.view(np.uint32) or (np.isnan(got) and np.isnan(half))
        assert L.u32_at(blocks, b, i) == blocks[b, i:i + 4].copy().view("<u4")[0]


def test_iq4_levels_are_llama_cpps():
    np.testing.assert_array_equal(L.IQ4_LEVELS, np.array(gguf.quants.IQ4_NL.kvalues, np.float32))
