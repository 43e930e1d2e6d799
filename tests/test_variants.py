"""service/model/variants.py: what granite, olmo2, smollm3 and gpt-oss read from their keys (llama.cpp's defaults
included), what they refuse, and which particulars keep a model off the GPU. Parity of whole models
with llama.cpp: tests/test_archs.py."""

from __future__ import annotations

import re

import pytest

from service.gguf_reader import read_gguf
from service.model import model as model_module
from service.model.config import ModelError, config_from_metadata
from service.model.model import Model
from service.model.placement import Placement
from service.model.variants import cpu_only
from service.model.weights import load_weights
from tests.arch_models import CASES, write_case
from tests.synthetic import metadata


def _meta(name: str, **change) -> dict:
    spec, extra = CASES[name]
    m = {k: v for k, v in {**metadata(spec), **extra}.items() if not k.startswith("tokenizer.")}
    m["general.architecture"] = spec.arch
    for k, v in change.items():
        k = k.replace("__", ".")
        m.pop(k) if v is None else m.__setitem__(k, v)
    return m


def test_granite_optional_scales_default_to_off():
    """Without residual, embedding and attention scales (or with 0, llama.cpp's 'unset') nothing is
    scaled; rope.scaling.finetuned false turns RoPE off everywhere."""
    m = _meta("granite", **{"granite.residual_scale": None, "granite.embedding_scale": 0.0,
                            "granite.attention.scale": None, "granite.rope.scaling.finetuned": False})
    c = config_from_metadata(m, "g.gguf")
    assert (c.residual_scale, c.embd_scale, c.attn_scale, c.logit_scale) == (1.0, 1.0, 0.25, 0.5)
    assert c.nope_layers == (True, True) and not c.rope_neox


@pytest.mark.parametrize("name,change,message", [
    ("granite", {"granite.logit_scale": None}, "granite.logit_scale: missing"),
    ("granite", {"granite.deepstack_mapping": [-1, 1]}, "granite.deepstack_mapping: deepstack layers"),
    ("granite", {"granite.expert_count": 4}, "granite.expert_count: mixture-of-experts granite models"),
    ("gpt-oss", {"gpt-oss.attention.sliding_window": None}, "gpt-oss.attention.sliding_window: missing"),
    ("gpt-oss", {"gpt-oss.expert_feed_forward_length": None}, "gpt-oss.expert_feed_forward_length: missing"),
    ("gpt-oss", {"gpt-oss.rope.freq_base_swa": 10000.0}, "gpt-oss.rope.freq_base_swa: 10000.0 != rope.freq_base"),
    ("gpt-oss", {"gpt-oss.expert_gating_func": 1},
     "gpt-oss.expert_gating_func: 1 (softmax) is not supported (llama.cpp routes gpt-oss with softmax_weight, 3)"),
    ("gpt-oss", {"gpt-oss.expert_weights_norm": True}, "gpt-oss.expert_weights_norm: True is not supported"),
    ("olmo2", {"olmo2.attention.key_length": 32, "olmo2.attention.value_length": 32},
     "olmo2.attention.key_length: 32 x 4 heads != embedding_length 64"),
])
def test_refused_metadata(name, change, message):
    with pytest.raises(ModelError, match=re.escape(message)):
        config_from_metadata(_meta(name, **change), "m.gguf")


def test_smollm3_every_fourth_layer_has_no_rope():
    c = config_from_metadata(_meta("smollm3", **{"smollm3.block_count": 9}), "s.gguf")
    assert [i for i, n in enumerate(c.nope_layers) if n] == [3, 7]


def test_olmo2_tensors_as_llamacpp(tmp_path):
    """OLMo 2 has no pre-norms and requires its own head: a file with attn_norm is refused (the
    tensor is not read), one without output.weight too."""
    from tests.synthetic import write_model

    spec, meta = CASES["olmo2"]
    path = write_model(tmp_path / "o.gguf", spec, meta=meta, drop=("output.weight",))
    f = read_gguf(path)
    with pytest.raises(ModelError, match="output.weight: tensor missing"):
        load_weights(f, config_from_metadata(f.metadata, str(path)))
    path = write_model(tmp_path / "o2.gguf", spec, meta=meta, extra={"blk.0.attn_norm.weight": [1.0] * 64})
    f = read_gguf(path)
    with pytest.raises(ModelError, match=r"blk.0.attn_norm.weight are not used by the olmo2 loader"):
        load_weights(f, config_from_metadata(f.metadata, str(path)))


@pytest.mark.parametrize("name,why", [("granite", "granite's residual and logit scales have no CUDA path"),
                                      ("olmo2", "norms after the blocks only and Q/K norms over the whole"),
                                      ("smollm3", "smollm3's layers without RoPE have no CUDA path"),
                                      ("gpt-oss", "mixture-of-experts layers have no CUDA kernels yet")])
def test_gpu_layers_refused(name, why, tmp_path, monkeypatch):
    """No CUDA path for these particulars: an explicit -ngl fails the load, -ngl auto keeps the CPU."""
    path = write_case(tmp_path, name)
    f = read_gguf(path)
    cfg = config_from_metadata(f.metadata, str(path))
    assert why in cpu_only(cfg)
    with pytest.raises(ModelError, match="start with -ngl 0"):
        load_weights(f, cfg, n_gpu=1)
    monkeypatch.setattr(model_module, "place", lambda req, n, dev=None: Placement(req, n, n, True, "a GPU"))
    m = Model(path, n_ctx=32, max_batch=4, n_gpu_layers="auto")
    assert m.placement.n_gpu == 0 and not m.placement.output_on_gpu and why in m.placement.warning


def test_olmo3_window_defaults_as_llamacpp():
    """OLMo 3 without the per-layer array: pattern 4 (3 sliding layers, then a global one); its sliding
    layers rotate unscaled with freq_base_swa (default: the global base)."""
    m = _meta("olmo3", **{"olmo2.attention.sliding_window_pattern": None, "olmo2.block_count": 8,
                          "olmo2.rope.freq_base_swa": 10000.0})
    c = config_from_metadata(m, "o.gguf")
    assert c.swa_layers == (True, True, True, False) * 2 and c.sliding_window == 4
    assert (c.rope_base_swa, c.rope_scale_swa, c.rope_scale, c.swa_own_rope) == (10000.0, 1.0, 0.25, True)
    assert config_from_metadata(_meta("olmo2"), "o.gguf").sliding_window == 0


def test_gpt_oss_reads_as_llamacpp():
    """Even layers slide (pattern 2), both kinds share the global (YaRN) RoPE table; Q/K/V/O biases and
    sinks; the router's softmax over the chosen experts, not renormalised; the clamped SwiGLU."""
    c = config_from_metadata(_meta("gpt-oss", **{"gpt-oss.block_count": 4}), "g.gguf")
    assert c.swa_layers == (True, False, True, False) and not c.swa_own_rope and c.rope_ext_factor == 1.0
    assert (c.qkv_bias, c.attn_out_bias, c.attn_sinks, c.expert_bias, c.expert_norm) == (True, True, True, True, False)
    assert (c.expert_gating, c.expert_act, c.rope_neox, c.n_ff_exp) == ("softmax_weight", "swiglu_oai", True, 64)


def test_plain_families_may_use_the_gpu():
    c = config_from_metadata(_meta("qwen3"), "q.gguf")
    assert cpu_only(c) == ""
