"""kernels/kv_types.py: llama-server's cache type names, and the bytes a cached token takes per
layer and kv head in each type (llama.cpp's ggml_row_size of one head)."""

import pytest

from kernels import kv_types as kt

# bytes of one head_dim = 64 row: what llama.cpp's ggml_row_size(type, 64) gives
ROW_BYTES_64 = {"f32": 256, "f16": 128, "bf16": 128, "q8_0": 68, "q4_0": 36, "q4_1": 40, "iq4_nl": 36, "q5_0": 44,
                "q5_1": 48}


def test_names_are_llama_servers_in_its_order():
    assert list(kt.NAMES) == ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
    with pytest.raises(ValueError, match="^Unsupported cache type: q8_1$"):
        kt.type_id("q8_1")
    with pytest.raises(ValueError, match="^Unsupported cache type: F16$"):  # names are case-sensitive there too
        kt.type_id("F16")


@pytest.mark.parametrize("name", list(ROW_BYTES_64))
def test_bytes_per_token_per_layer(name):
    t = kt.type_id(name)
    assert kt.row_bytes(t, 64) == ROW_BYTES_64[name]
    assert kt.row_bytes(t, 256) == 4 * ROW_BYTES_64[name]


def test_block_types_need_whole_blocks_per_head():
    assert kt.head_dim_error(kt.Q8_0, 64, "K") is None and kt.head_dim_error(kt.F16, 40, "V") is None
    assert kt.head_dim_error(kt.Q4_1, 80, "V") == (
        "V cache type q4_1 with block size 32 does not divide n_embd_head_v=80")
    assert kt.head_dim_error(kt.IQ4_NL, 48, "K") == (
        "K cache type iq4_nl with block size 32 does not divide n_embd_head_k=48")
