"""A loaded model: GGUF file -> config, tokenizer, packed weights, KV cache and forward pass.

Everything is validated before anything big is allocated (config, tokenizer, tensor
shapes), so a bad file fails with one ModelError/GGUFError naming the file and field.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from service.gguf_reader import read_gguf
from service.model import kvcache
from service.model.config import ModelConfig, ModelError, config_from_metadata
from service.model.forward import Batch, Forward
from service.model.kvcache import KVCache
from service.model.lora import Adapters, load_adapter
from service.model.placement import Placement, place
from service.model.prefetch import take, wait
from service.model.variants import cpu_only
from service.model.weights import load_weights
from service.tokenizer import Tokenizer

# llama.cpp's names for general.file_type (llama_ftype), as its model description shows them.
FTYPE_NAMES = {
    0: "all F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K - Medium",
    11: "Q3_K - Small", 12: "Q3_K - Medium", 13: "Q3_K - Large", 14: "Q4_K - Small", 15: "Q4_K - Medium",
    16: "Q5_K - Small", 17: "Q5_K - Medium", 18: "Q6_K", 19: "IQ2_XXS - 2.0625 bpw", 20: "IQ2_XS - 2.3125 bpw",
    22: "IQ3_XS - 3.3 bpw", 23: "IQ3_XXS - 3.0625 bpw", 24: "IQ1_S - 1.5625 bpw", 25: "IQ4_NL - 4.5 bpw",
    26: "IQ3_S - 3.4375 bpw", 27: "IQ3_S mix - 3.66 bpw", 28: "IQ2_S - 2.5 bpw", 29: "IQ2_M - 2.7 bpw",
    30: "IQ4_XS - 4.25 bpw", 31: "IQ1_M - 1.75 bpw", 32: "BF16", 36: "TQ1_0 - 1.69 bpw ternary",
    37: "TQ2_0 - 2.06 bpw ternary", 38: "MXFP4 MoE",
}
VOCAB_TYPES = {"spm": 1, "bpe": 2, "wpm": 3, "ugm": 4}  # llama_vocab_type numbers, as /v1/models reports them


class Model:
    def __init__(self, path: str | Path, n_ctx: int = 0, n_seq: int = 1, max_batch: int = 512,
                 n_gpu_layers: str = "0", device: str | None = None, lora: tuple[tuple[str, float], ...] = (),
                 cache_types: tuple[str, str] | None = None, n_ctx_seq: int = 0):
        t0 = time.perf_counter()
        self.path = Path(path)
        self.n_ctx_seq = n_ctx_seq  # llama.cpp's context per sequence, for longrope's table (0: from n_ctx; Forward)
        prefetched = take(path, n_gpu_layers, device)  # weights service.cli's prefetch() is packing
        self.file = read_gguf(self.path)
        meta = self.file.metadata
        self.cfg: ModelConfig = config_from_metadata(meta, str(self.path))
        try:  # built here while the prefetch thread packs: see service.model.prefetch on why
            self.tokenizer = Tokenizer.from_metadata(meta)
        except ValueError as e:
            raise ModelError(f"{self.path}: tokenizer: {e}") from None
        if self.tokenizer.n_vocab != self.cfg.n_vocab:
            raise ModelError(f"{self.path}: tokenizer.ggml.tokens: {self.tokenizer.n_vocab} tokens, "
                             f"but the model has {self.cfg.n_vocab}")
        try:  # -ngl and -dev against the devices present
            self.placement = place(str(n_gpu_layers), self.cfg.n_layer, device)
        except ValueError as e:
            raise ModelError(str(e)) from None
        p = self.placement
        why = cpu_only(self.cfg)
        if why and p.on_gpu and p.requested == "auto":  # refused in load_weights for an explicit -ngl
            p = self.placement = Placement(p.requested, p.n_layer, 0, False, "", warning=(
                f"{why}: every layer runs on the CPU"))
        ready = wait(prefetched)
        if not self.cfg.causal:  # an encoder (service.model.encoder): its own weights and forward
            self._encoder(n_ctx, n_seq, max_batch, lora, t0)
            return
        if ready and ready.file is self.file and ready.weights is not None and not p.n_gpu and not p.output_on_gpu:
            self.weights = ready.weights
        else:
            self.weights = load_weights(self.file, self.cfg, n_gpu=p.n_gpu, gpu_output=p.output_on_gpu)
        self.n_ctx = n_ctx if n_ctx > 0 else self.cfg.n_ctx_train
        self.n_seq = n_seq
        # -ctk / -ctv (None: service.model.kvcache.DEFAULT_TYPES); a block type that does not
        # divide head_dim fails here with llama.cpp's message
        self.cache_types = tuple(cache_types or kvcache.DEFAULT_TYPES)
        self.max_batch = max_batch
        if lora and (p.n_gpu or p.output_on_gpu):
            raise ModelError("LoRA adapters run on the CPU layers only: start with -ngl 0 to use --lora")
        has_output = "output.weight" in self.file.tensors
        self.adapters = Adapters([load_adapter(f, self.cfg, scale, has_output) for f, scale in lora], self.cfg)
        self._runtime()
        self.load_seconds = time.perf_counter() - t0

    def _encoder(self, n_ctx: int, n_seq: int, max_batch: int, lora, t0: float) -> None:
        from service.model.encoder import load_encoder

        if self.placement.on_gpu and self.placement.requested != "auto":
            raise ModelError(f"{self.path}: {self.cfg.arch} runs on the CPU only (start with -ngl 0)")
        if lora:
            raise ModelError(f"{self.path}: LoRA adapters are not supported for {self.cfg.arch}")
        self.placement = Placement(self.placement.requested, self.cfg.n_layer, 0, False, "")
        self.weights = load_encoder(self.file, self.cfg)
        # positions past the trained ones have no embedding: the context stops there
        self.n_ctx = min(n_ctx, self.cfg.n_ctx_train) if n_ctx > 0 else self.cfg.n_ctx_train
        self.n_seq, self.max_batch, self.cache_types = n_seq, max_batch, tuple(kvcache.DEFAULT_TYPES)
        self.adapters = Adapters([], self.cfg)
        self._runtime()
        self.load_seconds = time.perf_counter() - t0

    def _runtime(self) -> None:
        """The KV cache and the forward pass over self.weights (at load, and again in reload())."""
        if not self.cfg.causal:  # the engine's per-sequence bookkeeping (lengths): no keys or values
            from service.model.encoder import Encoder

            self.cache = KVCache(self.cfg, self.n_ctx, self.n_seq, types=self.cache_types)
            self.forward = Encoder(self.cfg, self.weights, self.cache, self.max_batch)
            return
        p = self.placement
        try:  # a block type that does not divide head_dim fails here with llama.cpp's message
            self.cache = KVCache(self.cfg, self.n_ctx, self.n_seq, n_gpu=p.n_gpu, types=self.cache_types)
        except ValueError as e:
            raise ModelError(str(e)) from None
        self.forward = Forward(self.cfg, self.weights, self.cache, self.max_batch, p, self.adapters, self.n_ctx_seq)

    def unload(self) -> None:
        """Drop the weights, KV cache and forward buffers (the server's sleep); reload() rebuilds them."""
        self.forward = self.cache = self.weights = None

    def reload(self) -> None:
        """Rebuild what unload() dropped, as the load built it (the adapters are kept)."""
        if self.cfg.causal:
            p = self.placement
            self.weights = load_weights(self.file, self.cfg, n_gpu=p.n_gpu, gpu_output=p.output_on_gpu)
        else:
            from service.model.encoder import load_encoder

            self.weights = load_encoder(self.file, self.cfg)
        self._runtime()

    # -- facts the server reports -----------------------------------------------------
    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.file.tensors.values())

    @property
    def size(self) -> int:
        return sum(t.nbytes for t in self.file.tensors.values())

    def facts(self) -> dict:
        meta, tok = self.file.metadata, self.tokenizer
        ftype = meta.get("general.file_type")
        return {
            "arch": self.cfg.arch,
            "n_params": self.n_params,
            "size": self.size,
            "n_ctx_train": self.cfg.n_ctx_train,
            "n_embd": self.cfg.n_embd,
            "n_vocab": self.cfg.n_vocab,
            "vocab_type": VOCAB_TYPES[tok.vocab_type],
            "ftype": FTYPE_NAMES.get(ftype, f"unknown ({ftype})"),
            "chat_template": meta.get("tokenizer.chat_template", ""),
            "bos_token": tok.bos_id,
            "eos_token": tok.eos_id,
            "eog_tokens": sorted(tok.eog_ids),
            "fim": {k: getattr(tok, f"fim_{k}_id", None) for k in ("pre", "suf", "mid", "pad", "rep", "sep")},
        }

    # -- evaluation ---------------------------------------------------------------------
    def eval(self, seq: int, tokens: list[int], want_last: bool = True) -> np.ndarray:
        """Append tokens to a sequence (in chunks of max_batch); the host logits (n_vocab,) of the last
        one, or an empty (0, n_vocab) array when want_last is False or tokens is empty."""
        start = int(self.cache.length[seq])
        if start + len(tokens) > self.n_ctx:
            raise ValueError(f"sequence {seq}: {start + len(tokens)} tokens exceed the context of {self.n_ctx}")
        out = None
        for c0 in range(0, len(tokens), self.max_batch):
            chunk = np.asarray(tokens[c0 : c0 + self.max_batch], np.int32)
            n = len(chunk)
            want = np.zeros(n, bool)
            want[-1] = want_last and c0 + n == len(tokens)
            pos = np.arange(start + c0, start + c0 + n, dtype=np.int32)
            out = self.forward(Batch(chunk, np.full(n, seq, np.int32), pos, want))
        if out is None or not len(out.logits):
            return np.zeros((0, self.cfg.n_vocab), np.float32)
        return out.logits.row(len(out.logits) - 1)  # float32 (n_vocab,) on the host
