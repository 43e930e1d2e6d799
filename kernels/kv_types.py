"""KV cache types: llama-server's -ctk/-ctv names, their ggml type ids, and how a cache row is stored.

Type ids are ggml's (gguf.GGMLQuantizationType): F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7,
Q8_0 8, IQ4_NL 20, BF16 30. The cache stores one row per (sequence, kv head, position): the
head_dim values of one token's key (or value) for one head, as

  f32               float32 (head_dim,)
  f16, bf16         uint16 (head_dim,): the IEEE half / bfloat16 bits
  the quantized     uint8 (head_dim // 32 * block_bytes,): whole ggml blocks of 32 values,
                    byte for byte as gguf lays them out (an f16 scale first in every block)

so a token's row is whole blocks, a context shift moves rows, and the quantized types need
head_dim % 32 == 0 (llama.cpp refuses the same, with the message of head_dim_error()).
"""

from __future__ import annotations

import numpy as np

F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, BF16 = 0, 1, 2, 3, 6, 7, 8, 20, 30

# llama.cpp's kv_cache_types (common/arg.cpp), in its order: the names -ctk/-ctv accept.
NAMES: dict[str, int] = {"f32": F32, "f16": F16, "bf16": BF16, "q8_0": Q8_0, "q4_0": Q4_0, "q4_1": Q4_1,
                         "iq4_nl": IQ4_NL, "q5_0": Q5_0, "q5_1": Q5_1}
TYPE_NAMES: dict[int, str] = {v: k for k, v in NAMES.items()}
BLOCK = 32  # values per block of every quantized cache type
BLOCK_BYTES: dict[int, int] = {Q8_0: 34, Q4_0: 18, Q4_1: 20, IQ4_NL: 18, Q5_0: 22, Q5_1: 24}


def type_id(name: str) -> int:
    """The ggml id of a cache type name; llama-server's error for any other name."""
    try:
        return NAMES[name]
    except KeyError:
        raise ValueError(f"Unsupported cache type: {name}") from None


def is_quantized(t: int) -> bool:
    return t in BLOCK_BYTES


def storage_dtype(t: int) -> type:
    """The host dtype of a cache row of type t."""
    if t == F32:
        return np.float32
    if t in (F16, BF16):
        return np.uint16
    if is_quantized(t):
        return np.uint8
    raise ValueError(f"not a KV cache type: {t}")


def row_width(t: int, head_dim: int) -> int:
    """Elements of storage_dtype(t) in one row of head_dim values."""
    if is_quantized(t):
        if head_dim % BLOCK:
            raise ValueError(head_dim_error(t, head_dim, "K"))
        return head_dim // BLOCK * BLOCK_BYTES[t]
    storage_dtype(t)  # validates t
    return head_dim


def row_bytes(t: int, head_dim: int) -> int:
    """Bytes of one row of head_dim values (what a token costs per layer and kv head)."""
    return row_width(t, head_dim) * np.dtype(storage_dtype(t)).itemsize


def head_dim_error(t: int, head_dim: int, which: str) -> str | None:
    """llama.cpp's refusal (llama_init_from_model) of a block type that does not divide head_dim;
    None when it fits. which: "K" or "V"."""
    if not is_quantized(t) or head_dim % BLOCK == 0:
        return None
    part = "k" if which == "K" else "v"
    return (f"{which} cache type {TYPE_NAMES[t]} with block size {BLOCK} does not divide "
            f"n_embd_head_{part}={head_dim}")
