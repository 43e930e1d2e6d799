"""Synthetic LoRA adapters for SmolLM2 (the real model), written with gguf.GGUFWriter in the
format llama.cpp's convert_lora_to_gguf.py writes, and fully determined by their arguments (no
random generator: the same bytes on every machine), so llama.cpp's outputs recorded for them
(tests/fixtures/lora_smollm2.json, by tests/fixtures/record_lora.py) stay valid.

Adapter 0 ("all"): rank 4, alpha 8, on every layer's Q, K, V, O, gate, up and down (SmolLM2 ties
its output head to the embeddings, so there is no output.weight to adapt: llama.cpp refuses that).
Adapter 1 ("attn"): rank 2, no alpha, on the attention matrices of the even layers only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_LAYER, N_EMBD, N_FF, N_Q, N_KV, N_VOCAB = 30, 576, 1536, 576, 192, 49152
SHAPES = {"attn_q": (N_Q, N_EMBD), "attn_k": (N_KV, N_EMBD), "attn_v": (N_KV, N_EMBD), "attn_output": (N_EMBD, N_Q),
          "ffn_gate": (N_FF, N_EMBD), "ffn_up": (N_FF, N_EMBD), "ffn_down": (N_EMBD, N_FF)}
SPECS = {
    "all": dict(rank=4, alpha=8.0, amp=0.05, layers=range(N_LAYER), targets=tuple(SHAPES), output=False, phase=0.3),
    "attn": dict(rank=2, alpha=0.0, amp=0.15, layers=range(0, N_LAYER, 2), targets=("attn_q", "attn_k", "attn_v",
                                                                                    "attn_output"),
                 output=False, phase=1.7),
}


def _wave(shape: tuple[int, ...], amp: float, phase: float) -> np.ndarray:
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (amp * np.sin(phase + i * 0.7311) * np.cos(i * 0.0137 + phase * 3)).astype(np.float32).reshape(shape)


def write_adapter(path: Path, which: str) -> Path:
    import gguf

    s = SPECS[which]
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", s["alpha"])
    r, k = s["rank"], 0
    for li in s["layers"]:
        for t in s["targets"]:
            n, kk = SHAPES[t]
            k += 1
            w.add_tensor(f"blk.{li}.{t}.weight.lora_a", _wave((r, kk), s["amp"], s["phase"] + k))
            w.add_tensor(f"blk.{li}.{t}.weight.lora_b", _wave((n, r), s["amp"], s["phase"] - k))
    if s["output"]:
        w.add_tensor("output.weight.lora_a", _wave((r, N_EMBD), s["amp"], s["phase"] + 0.5))
        w.add_tensor("output.weight.lora_b", _wave((N_VOCAB, r), s["amp"] * 0.5, s["phase"] - 0.5))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_all(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {name: write_adapter(directory / f"lora-{name}.gguf", name) for name in SPECS}
