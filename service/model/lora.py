"""LoRA adapters (--lora, --lora-scaled): GGUF files of low-rank updates to a base model.

The format is llama.cpp's (what its convert_lora_to_gguf.py writes): `general.type` "adapter",
`general.architecture` the base model's, `adapter.type` "lora", `adapter.lora.alpha` (0: none),
and for each adapted matrix W the pair `<W's name>.lora_a` (GGUF shape [k, r], numpy (r, k)) and
`<W's name>.lora_b` (GGUF [r, n], numpy (n, r)), in any type gguf can dequantize. The update to
x @ W.T is scale * alpha / r * (x @ A.T) @ B.T (without alpha: scale alone), as llama.cpp's.

Adapted matrices: each layer's attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down,
and the output head. Any other (token_embd, norms) fails the load naming the tensor. The
adapters run on the CPU layers; with layers on a GPU (-ngl) they are refused (service.model.model).

`Adapters` stacks every adapter per layer and matrix, ranks zero-padded to the largest and B
pre-multiplied by alpha / r, for kernels.lora.lora_add: one call per matrix covers all adapters,
each token with its own scales.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gguf.quants import dequantize

from service.gguf_reader import GGUFError, read_gguf
from service.model.config import ModelConfig, ModelError

TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def target_shapes(c: ModelConfig) -> dict[str, tuple[int, int]]:
    """(n, k) of each adapted matrix of a layer."""
    nq, nkv = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    e, f = c.n_embd, c.n_ff
    return {"attn_q": (nq, e), "attn_k": (nkv, e), "attn_v": (nkv, e), "attn_output": (e, nq),
            "ffn_gate": (f, e), "ffn_up": (f, e), "ffn_down": (e, f)}


@dataclass
class Adapter:
    path: str
    alpha: float
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # base name -> (A, B) float32
    scale: float = 1.0  # the server-wide scale (--lora-scaled, POST /lora-adapters)
    task_name: str = ""  # adapter.lora.task_name and .prompt_prefix, as GET /lora-adapters shows them
    prompt_prefix: str = ""


def _float(f, name: str) -> np.ndarray:
    t = f.tensors[name]
    raw = f.data(name)
    return np.ascontiguousarray(dequantize(raw, t.qtype), np.float32).reshape(tuple(reversed(t.shape)))


def load_adapter(path: str, c: ModelConfig, scale: float = 1.0, has_output: bool = True) -> Adapter:
    """Read and check one adapter file against the base model (has_output: it has its own
    output.weight, not tied to token_embd); ModelError names what is wrong."""
    try:
        f = read_gguf(path)
    except GGUFError as e:
        raise ModelError(f"LoRA adapter {e}") from None
    meta = f.metadata
    if meta.get("general.type") != "adapter":
        raise ModelError(f"{path}: expect general.type to be 'adapter', but got: {meta.get('general.type', '')}")
    if meta.get("general.architecture") != c.arch:
        raise ModelError(f"{path}: model arch and LoRA arch mismatch ({meta.get('general.architecture')} vs {c.arch})")
    if meta.get("adapter.type") != "lora":
        raise ModelError(f"{path}: expect adapter.type to be 'lora', but got: {meta.get('adapter.type', '')}")
    ad = Adapter(path, float(meta.get("adapter.lora.alpha", 0.0) or 0.0), scale=scale,
                 task_name=str(meta.get("adapter.lora.task_name", "")),
                 prompt_prefix=str(meta.get("adapter.lora.prompt_prefix", "")))
    shapes = target_shapes(c)
    names = {n[: -len(".lora_a")] for n in f.tensors if n.endswith(".lora_a")}
    names |= {n[: -len(".lora_b")] for n in f.tensors if n.endswith(".lora_b")}
    for base in sorted(names):
        if base + ".lora_a" not in f.tensors or base + ".lora_b" not in f.tensors:
            raise ModelError(f"{path}: LoRA tensor pair for '{base}' not found")
        parts = base.split(".")
        if base == "output.weight":
            if not has_output:
                raise ModelError(f"{path}: LoRA tensor 'output.weight' does not exist in base model (hint: maybe "
                                 "wrong base model?)")
            n, k = c.n_vocab, c.n_embd
        elif len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in TARGETS \
                and parts[3] == "weight":
            n, k = shapes[parts[2]]
            if c.n_expert and parts[2].startswith("ffn_"):  # a MoE layer has experts, no dense FFN
                raise ModelError(f"{path}: LoRA tensor '{base}' does not exist in base model (hint: maybe "
                                 "wrong base model?)")
            if not 0 <= int(parts[1]) < c.n_layer:
                raise ModelError(f"{path}: '{base}': the model has {c.n_layer} layers")
        else:
            raise ModelError(f"{path}: LoRA on '{base}' is not supported by llamajit (adapted matrices: "
                             f"{', '.join(TARGETS)} and output)")
        a, b = _float(f, base + ".lora_a"), _float(f, base + ".lora_b")
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != k or b.shape[0] != n:
            raise ModelError(f"{path}: tensor '{base}' has incorrect shape (hint: maybe wrong base model?)")
        if a.shape[0] != b.shape[1]:
            raise ModelError(f"{path}: lora_a tensor is not transposed for '{base}'")
        ad.pairs[base] = (a, b)
    if not ad.pairs:
        raise ModelError(f"{path}: the adapter has no LoRA tensors")
    return ad


class Adapters:
    """The loaded adapters, stacked for the kernels. ids are positions in `items`."""

    def __init__(self, items: list[Adapter], c: ModelConfig):
        self.items = items
        self.n = len(items)
        self.rank = max((a.shape[0] for ad in items for a, _ in ad.pairs.values()), default=0)
        r, shapes = max(self.rank, 1), target_shapes(c)
        # layer li: (A tuple, B tuple) over TARGETS; A (J, r, k), B (J, n, r)
        self.layers = []
        for li in range(c.n_layer):
            a_s, b_s = [], []
            for t in TARGETS:
                n, k = shapes[t]
                a_s.append(self._stack(f"blk.{li}.{t}.weight", n, k, r))
                b_s.append(self._stack(f"blk.{li}.{t}.weight", n, k, r, b=True))
            self.layers.append((tuple(a_s), tuple(b_s)))
        has_out = any("output.weight" in ad.pairs for ad in items)
        self.out = (self._stack("output.weight", c.n_vocab, c.n_embd, r),
                    self._stack("output.weight", c.n_vocab, c.n_embd, r, b=True)) if has_out else None

    def _stack(self, name: str, n: int, k: int, r: int, b: bool = False) -> np.ndarray:
        if not self.n:
            return np.zeros((0, n, 0) if b else (0, 0, k), np.float32)
        out = np.zeros((self.n, n, r) if b else (self.n, r, k), np.float32)
        for j, ad in enumerate(self.items):
            pair = ad.pairs.get(name)
            if pair is None:
                continue
            a, bm = pair
            rank = a.shape[0]
            if b:
                out[j, :, :rank] = bm * (ad.alpha / rank if ad.alpha else 1.0)
            else:
                out[j, :rank] = a
        return out

    def scales(self) -> np.ndarray:
        """float32 (J,) the server-wide scales."""
        return np.array([ad.scale for ad in self.items], np.float32)


def no_adapters(c: ModelConfig) -> Adapters:
    return Adapters([], c)
