"""Broken model files: each gives one clear error, GGUFError or ModelError (both ValueError),
whose message names the file and the field, raised before any weight is packed. Files go
through service.model.model.Model, the server's entry point (reader, config, tokenizer,
weights, cache)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

import service.model.weights as weights_module
from service.gguf_reader import GGUFError
from service.model.config import ModelError
from service.model.model import Model
from tests.synthetic import Spec, write_model

LLAMA = Spec("llama")  # n_embd 64, 4 heads (2 kv) of 16, n_ff 96, 72 tokens, 2 layers


def load(path) -> Model:
    return Model(path, n_ctx=64, n_seq=1, max_batch=8)


def truncate_to(n: int):
    def cut(path):
        os.truncate(path, n)
    return cut


def drop_last(n: int):
    def cut(path):
        os.truncate(path, os.path.getsize(path) - n)
    return cut


# id: (spec, write_model keywords, post-processing, error class, field named in the message)
CASES = {
    "unsupported architecture": (LLAMA, dict(arch_name="mamba"), None, ModelError,
                                 "general.architecture: unknown model architecture: 'mamba'"),
    # Tensors the loader does not look up are refused, never dropped (llama.cpp refuses them too).
    "unused tensor": (LLAMA, dict(extra={"blk.0.attn_q.bias": np.zeros(64)}), None, ModelError, "blk.0.attn_q.bias"),
    "rope_freqs on qwen2": (Spec("qwen2"), dict(extra={"rope_freqs.weight": np.ones(8)}), None, ModelError,
                            "rope_freqs.weight"),
    "rope_freqs shape": (LLAMA, dict(extra={"rope_freqs.weight": np.ones(4)}), None, ModelError, "rope_freqs.weight"),
    "phi3 longrope factors shape": (Spec("phi3"), dict(extra={"rope_factors_long.weight": np.ones(4),
                                                              "rope_factors_short.weight": np.ones(8)}), None,
                                    ModelError, "rope_factors_long.weight"),
    "phi3 separate ffn_gate": (Spec("phi3"), dict(extra={"blk.0.ffn_gate.weight": np.ones((96, 64))}), None,
                               ModelError, "blk.0.ffn_gate.weight"),
    "gemma2 separate head": (Spec("gemma2", tied=False), {}, None, ModelError, "output.weight"),
    "gemma2 swa pattern past the layers": (Spec("gemma2"), dict(meta={"gemma2.attention.sliding_window_pattern": 9}),
                                           None, ModelError, "gemma2.attention.sliding_window_pattern"),
    # expert_count makes a llama file Mixtral-style: its dense FFN tensors are then unknown to the loader
    "mixtral-style experts without them": (LLAMA, dict(meta={"llama.expert_count": 8, "llama.expert_used_count": 2}),
                                           None, ModelError, "blk.0.ffn_gate_inp.weight: tensor missing"),
    "qwen3moe without expert_count": (Spec("qwen3moe"), {}, None, ModelError, "qwen3moe.expert_count: missing"),
    "qwen2moe without its shared expert": (
        Spec("qwen2moe", tied=False, n_expert=4, n_expert_used=2, n_ff_exp=64),
        {}, None, ModelError, "blk.0.ffn_gate_inp_shexp.weight: tensor missing"),
    "longrope scaling": (LLAMA, dict(meta={"llama.rope.scaling.type": "longrope"}), None, ModelError,
                         "llama.rope.scaling.type: unsupported rope scaling type 'longrope'"),
    "unknown rope scaling": (LLAMA, dict(meta={"llama.rope.scaling.type": "dynamic"}), None, ModelError,
                             "llama.rope.scaling.type"),
    "yarn beta_fast llama.cpp ignores": (LLAMA, dict(meta={"llama.rope.scaling.type": "yarn",
                                                           "llama.rope.scaling.factor": 4.0,
                                                           "llama.rope.scaling.yarn_beta_fast": 16.0}), None,
                                         ModelError, "llama.rope.scaling.yarn_beta_fast"),
    "yarn with sliding-window layers": (Spec("gemma3", sliding_window=4), dict(meta={
        "gemma3.rope.scaling.type": "yarn", "gemma3.rope.scaling.factor": 4.0}), None, ModelError,
        "gemma3.rope.scaling.type"),
    "norm vector of type F16": (LLAMA, dict(types={"blk.1.ffn_norm.weight": T.F16}), None, ModelError,
                                "blk.1.ffn_norm.weight"),
    "matrix of an unsupported type": (LLAMA, dict(types={"blk.0.ffn_up.weight": T.Q8_1}), None, ModelError,
                                      "blk.0.ffn_up.weight"),
    "missing tensor": (LLAMA, dict(drop=("blk.1.ffn_down.weight",)), None, ModelError, "blk.1.ffn_down.weight"),
    "missing norm": (LLAMA, dict(drop=("output_norm.weight",)), None, ModelError, "output_norm.weight"),
    "missing qwen2 bias": (Spec("qwen2"), dict(drop=("blk.1.attn_v.bias",)), None, ModelError, "blk.1.attn_v.bias"),
    "missing qwen3 k norm": (Spec("qwen3"), dict(drop=("blk.0.attn_k_norm.weight",)), None, ModelError,
                             "blk.0.attn_k_norm.weight"),
    "missing gemma3 post-norm": (Spec("gemma3"), dict(drop=("blk.1.post_ffw_norm.weight",)), None, ModelError,
                                 "blk.1.post_ffw_norm.weight"),
    "matrix shape against metadata": (LLAMA, dict(shapes={"blk.0.attn_k.weight": (64, 64)}), None, ModelError,
                                      "blk.0.attn_k.weight"),
    "q norm shape against key_length": (Spec("qwen3", head_dim=32), dict(shapes={"blk.1.attn_q_norm.weight": (16,)}),
                                        None, ModelError, "blk.1.attn_q_norm.weight"),
    "norm shape against metadata": (LLAMA, dict(shapes={"blk.0.attn_norm.weight": (32,)}), None, ModelError,
                                    "blk.0.attn_norm.weight"),
    "embedding rows against vocabulary": (LLAMA, dict(shapes={"token_embd.weight": (80, 64)}), None, ModelError,
                                          "token_embd.weight"),
    "vocab_size against the token list": (LLAMA, dict(meta={"llama.vocab_size": 80}), None, ModelError,
                                          "llama.vocab_size"),
    "head_count 0": (LLAMA, dict(meta={"llama.attention.head_count": 0}), None, ModelError,
                     "llama.attention.head_count"),
    "head_count_kv not dividing head_count": (LLAMA, dict(meta={"llama.attention.head_count_kv": 3}), None,
                                              ModelError, "llama.attention.head_count_kv"),
    "absurd block_count": (LLAMA, dict(meta={"llama.block_count": 1_000_000}), None, ModelError,
                           "llama.block_count"),
    "context_length 0": (LLAMA, dict(meta={"llama.context_length": 0}), None, ModelError, "llama.context_length"),
    "missing embedding_length": (LLAMA, dict(meta={"llama.embedding_length": None}), None, ModelError,
                                 "llama.embedding_length"),
    "bos id past the vocabulary": (LLAMA, dict(meta={"tokenizer.ggml.bos_token_id": 72}), None, ModelError,
                                   "tokenizer.ggml.bos_token_id"),
    "padding id past the vocabulary": (LLAMA, dict(meta={"tokenizer.ggml.padding_token_id": 1 << 20}), None,
                                       ModelError, "tokenizer.ggml.padding_token_id"),
    "scores shorter than the tokens": (LLAMA, dict(meta={"tokenizer.ggml.scores": [0.0] * 71}), None, ModelError,
                                       "tokenizer.ggml.scores"),
    "token types shorter than the tokens": (LLAMA, dict(meta={"tokenizer.ggml.token_type": [1] * 10}), None,
                                            ModelError, "tokenizer.ggml.token_type"),
    "truncated file": (LLAMA, {}, truncate_to(300), GGUFError, "truncated file"),
    "empty file": (LLAMA, {}, truncate_to(0), GGUFError, "cannot map"),
    "tensor past the end of the file": (LLAMA, {}, drop_last(64), GGUFError, "output_norm.weight"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_file(tmp_path, monkeypatch, case):
    spec, kw, post, error, field = CASES[case]
    path = write_model(tmp_path / "broken.gguf", spec, **kw)
    if post:
        post(path)
    packed = []
    real_pack = weights_module.pack
    monkeypatch.setattr(weights_module, "pack", lambda *a: packed.append(a) or real_pack(*a))
    with pytest.raises(error) as info:
        load(path)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and field in msg, msg
    assert not packed, "a weight was packed before the error"


@pytest.mark.parametrize("spec", [LLAMA, Spec("qwen2", tied=False), Spec("qwen3", head_dim=32),
                                  Spec("gemma3", n_layer=7, sliding_window=4), Spec("phi3"),
                                  Spec("gemma2", sliding_window=4)], ids=lambda s: s.arch)
def test_intact_files_load(tmp_path, spec):
    """The files the cases above break load cleanly, with the metadata's values."""
    m = load(write_model(tmp_path / "ok.gguf", spec))
    cfg, w = m.cfg, m.weights
    assert (cfg.arch, cfg.n_layer, cfg.n_embd, cfg.n_vocab, cfg.head_dim) == (
        spec.arch, spec.n_layer, spec.n_embd, spec.n_vocab, spec.hd)
    assert len(w.layers) == spec.n_layer
    assert (w.layers[0].bqkv is not None) == (spec.arch == "qwen2")
    assert (w.layers[0].q_norm is not None) == (spec.arch in ("gemma3", "qwen3"))
    assert (w.layers[0].post_ffn_norm is not None) == (spec.arch in ("gemma2", "gemma3"))
    assert cfg.rope_neox == (spec.arch != "llama")
    period = 2 if spec.arch == "gemma2" else 6  # llama.cpp's default sliding_window_pattern
    assert cfg.swa_layers == tuple(spec.sliding_window > 0 and i % period != period - 1 for i in range(spec.n_layer))


def test_one_error_for_many_problems(tmp_path):
    """A file broken in several places reports the first problem only, as one exception."""
    path = write_model(tmp_path / "broken.gguf", LLAMA, drop=("blk.0.attn_q.weight", "blk.1.ffn_up.weight"),
                       types={"output_norm.weight": T.F16})
    with pytest.raises(ModelError) as info:
        load(path)
    assert "blk.0.attn_q.weight: tensor missing" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
