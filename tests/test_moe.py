"""The mixture-of-experts FFN block (service.model.moe) against a float64 NumPy oracle of llama.cpp's
build_moe_ffn, and the MoE files and placements that are refused. Parity of whole models with
llama.cpp itself: tests/test_archs.py (qwen3moe, qwen2moe, Mixtral-style llama).

Tolerance 1e-5 on max|ours - oracle| / max|oracle's output|: float32 against float64 through
64- and 96-wide FFNs, measured 2e-7 to 4e-7. For quantized experts (Q8_0, Q4_0, Q5_0) the oracle
rounds the experts' inputs to int8 per 32 values as ours are (act_q8; without it they differ by
1.2e-2 to 1.5e-2, the rounding itself), and agrees to 3e-7. A wrong expert, weight or gate moves
the output by order 1 (test_oracle_sees_each_particular).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from gguf import GGUFWriter
from gguf.quants import dequantize

from service.gguf_reader import read_gguf
from service.model import model as model_module
from service.model.config import ModelError, config_from_metadata
from service.model.forward import Batch, Forward
from service.model.kvcache import KVCache
from service.model.lora import load_adapter
from service.model.model import Model
from service.model.moe import MoE, moe_ffn
from service.model.placement import Placement
from service.model.weights import load_weights
from tests.arch_models import CASES, write_case
from tests.oracles.model import q8
from tests.synthetic import metadata


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("moe")
    out = {}
    for name in ("qwen2moe", "qwen3moe-quant"):
        f = read_gguf(write_case(d, name))
        cfg = config_from_metadata(f.metadata, str(f.path))
        out[name] = (f, cfg, load_weights(f, cfg))
    return out


def _deq(f, name: str) -> np.ndarray:
    t = f.tensors[name]
    return dequantize(np.asarray(f.data(name)), t.qtype).astype(np.float64).reshape(tuple(reversed(t.shape)))


def oracle(f, cfg, li: int, x: np.ndarray, act_q8: bool = False) -> np.ndarray:
    """x (T, n_embd) + the MoE block's output, in float64 from the file's dequantized tensors;
    act_q8: the experts' inputs rounded to int8 per 32 values as ours are (for quantized experts)."""
    r = q8 if act_q8 else (lambda v: v)
    p = f"blk.{li}."
    silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    h = x.astype(np.float64)
    h = h / np.sqrt((h * h).mean(axis=1, keepdims=True) + cfg.norm_eps) * _deq(f, p + "ffn_norm.weight")
    z = h @ _deq(f, p + "ffn_gate_inp.weight").T
    prob = np.exp(z - z.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    gate, up, down = (_deq(f, p + f"ffn_{m}_exps.weight") for m in ("gate", "up", "down"))
    out = x.astype(np.float64).copy()
    for t in range(len(x)):
        ids = np.argsort(-prob[t], kind="stable")[: cfg.n_expert_used]
        w = prob[t, ids] / (prob[t, ids].sum() if cfg.expert_norm else 1.0)
        for e, we in zip(ids, w):
            out[t] += we * down[e] @ r(silu(gate[e] @ r(h[t])) * (up[e] @ r(h[t])))
    if cfg.n_ff_shexp:
        g = 1 / (1 + np.exp(-(h @ _deq(f, p + "ffn_gate_inp_shexp.weight").reshape(-1))))
        s = silu(h @ _deq(f, p + "ffn_gate_shexp.weight").T) * (h @ _deq(f, p + "ffn_up_shexp.weight").T)
        out += g[:, None] * (s @ _deq(f, p + "ffn_down_shexp.weight").T)
    return out


def run_block(cfg, w, li: int, x: np.ndarray) -> np.ndarray:
    moe = MoE(cfg, w.layers, 16)
    xs = x.copy()
    moe_ffn(moe.buffers(xs, np.zeros_like(xs)), moe.weights[li], moe.config)
    return xs


@pytest.mark.parametrize("name,act_q8", [("qwen2moe", False), ("qwen3moe-quant", True)])
@pytest.mark.parametrize("n_tok", [1, 9])  # one decode token; a prefill block (int8 codes widened for 8+ rows)
def test_block_matches_oracle(models, name, act_q8, n_tok):
    f, cfg, w = models[name]
    x = np.random.default_rng(n_tok).standard_normal((n_tok, cfg.n_embd)).astype(np.float32)
    for li in range(cfg.n_layer):
        ref = oracle(f, cfg, li, x, act_q8)
        err = np.abs(run_block(cfg, w, li, x) - ref).max() / np.abs(ref - x).max()
        assert err <= 1e-5, (name, li, err)


def test_oracle_sees_each_particular(models):
    """The comparison can fail: without renormalisation (qwen3moe renormalises), or without the
    shared expert (qwen2moe), the block misses the oracle by far more than the bound."""
    x = np.random.default_rng(5).standard_normal((9, 64)).astype(np.float32)
    f, cfg, w = models["qwen3moe-quant"]
    ref = oracle(f, cfg, 0, x, act_q8=True)
    off = run_block(dataclasses.replace(cfg, expert_norm=False), w, 0, x)
    assert np.abs(off - ref).max() / np.abs(ref - x).max() > 0.1
    f, cfg, w = models["qwen2moe"]
    ref = oracle(f, cfg, 0, x)
    no_shared = oracle(f, dataclasses.replace(cfg, n_ff_shexp=0), 0, x)
    assert np.abs(no_shared - ref).max() / np.abs(ref - x).max() > 0.1


# the config's keys (the tokenizer's arrays are the file's business)
QWEN3MOE = {"general.architecture": "qwen3moe",
            **{k: v for k, v in metadata(CASES["qwen3moe"][0]).items() if not k.startswith("tokenizer.")}}


@pytest.mark.parametrize("change,message", [
    ({"qwen3moe.expert_gating_func": 2}, "qwen3moe.expert_gating_func: 2 (sigmoid) is not supported"),
    ({"qwen3moe.expert_gating_func": 7}, "qwen3moe.expert_gating_func: 7 (unknown) is not supported"),
    ({"qwen3moe.expert_weights_norm": False}, "qwen3moe.expert_weights_norm: False is not supported"),
    ({"qwen3moe.expert_weights_scale": 2.5}, "qwen3moe.expert_weights_scale: 2.5 is not supported"),
    ({"qwen3moe.expert_group_count": 2}, "qwen3moe.expert_group_count: grouped expert routing"),
    ({"qwen3moe.expert_used_count": 5}, "qwen3moe.expert_used_count: 5 is outside [1, 4]"),
    ({"qwen3moe.expert_count": None}, "qwen3moe.expert_count: missing"),
])
def test_refused_metadata(change, message):
    meta = dict(QWEN3MOE)
    for k, v in change.items():
        meta.pop(k) if v is None else meta.__setitem__(k, v)
    with pytest.raises(ModelError, match=re.escape(message)):
        config_from_metadata(meta, "m.gguf")


def test_defaults_as_llamacpp():
    """Without expert_feed_forward_length an expert is n_ff / n_used wide; a softmax gating key or a
    scale of 1 changes nothing; qwen2moe does not renormalise, its shared expert defaults to n_ff."""
    meta = {k: v for k, v in QWEN3MOE.items() if k != "qwen3moe.expert_feed_forward_length"}
    meta.update({"qwen3moe.expert_gating_func": 1, "qwen3moe.expert_weights_scale": 1.0})
    c = config_from_metadata(meta, "m.gguf")
    assert (c.n_ff_exp, c.expert_norm, c.n_ff_shexp) == (96 // 2, True, 0)
    meta = {k.replace("qwen3moe.", "qwen2moe."): v for k, v in QWEN3MOE.items()}
    meta["general.architecture"] = "qwen2moe"
    c = config_from_metadata(meta, "m.gguf")
    assert (c.expert_norm, c.n_ff_shexp, c.qkv_bias, c.qk_norm) == (False, 96, True, False)


def test_gpu_layers_refused(models, tmp_path, monkeypatch):
    """No CUDA kernels for experts: an explicit -ngl fails the load; -ngl auto keeps every layer on the CPU."""
    f, cfg, _ = models["qwen2moe"]
    with pytest.raises(ModelError, match="no CUDA kernels yet"):
        load_weights(f, cfg, n_gpu=1)
    path = write_case(tmp_path, "qwen2moe")
    monkeypatch.setattr(model_module, "place", lambda req, n, dev=None: Placement(req, n, n, True, "a GPU"))
    with pytest.raises(ModelError, match=r"start with -ngl 0"):
        Model(path, n_ctx=32, max_batch=4, n_gpu_layers="2")
    m = Model(path, n_ctx=32, max_batch=4, n_gpu_layers="auto")
    assert m.placement.n_gpu == 0 and not m.placement.output_on_gpu and "CPU" in m.placement.warning


def test_lora_on_experts_refused(models, tmp_path):
    """An adapter of a dense FFN matrix names a tensor a MoE model does not have (llama.cpp's message)."""
    _, cfg, _ = models["qwen2moe"]
    w = GGUFWriter(tmp_path / "a.gguf", "qwen2moe")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_tensor("blk.0.ffn_gate.weight.lora_a", np.zeros((2, cfg.n_embd), np.float32))
    w.add_tensor("blk.0.ffn_gate.weight.lora_b", np.zeros((cfg.n_ff, 2), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelError, match="'blk.0.ffn_gate.weight' does not exist in base model"):
        load_adapter(str(tmp_path / "a.gguf"), cfg)


def test_decode_equals_prefill(models):
    """A MoE model's one-token decode steps (one expert block per token) give the logits of one prefill
    over the same tokens (experts run on gathered rows), within float32 reordering (1e-5 of the max)."""
    _, cfg, w = models["qwen2moe"]
    tokens = np.random.default_rng(7).integers(0, cfg.n_vocab, 12).astype(np.int32)

    def run(chunks):
        fw, out, p = Forward(cfg, w, KVCache(cfg, 32, 1), 16), [], 0
        for c in chunks:
            n = len(c)
            out.append(fw(Batch(c, np.zeros(n, np.int32), np.arange(p, p + n, dtype=np.int32),
                                np.ones(n, bool))).logits.host())
            p += n
        return np.concatenate(out)

    whole = run([tokens])
    steps = run([tokens[:6]] + [tokens[i : i + 1] for i in range(6, 12)])
    assert np.abs(whole - steps).max() <= 1e-5 * np.abs(whole).max()
