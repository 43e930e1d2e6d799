"""End to end: tiny llama models whose matrices are IQ1/IQ2/IQ3, TQ and MXFP4 load and give the
logits of the float64 NumPy oracle (tests/oracles/model.py) run on gguf's dequantized weights.

One model gives each matrix kind another of the new types (nine of them, the token embedding
included, which is dequantized row by row rather than multiplied); a second one is TQ2_0
throughout. gguf cannot quantize the IQ types: their blocks are random sane ones
(tests/oracles/quant_blocks.random_matrix), and so are MXFP4's; the TQ ones gguf quantizes. Every float16
scale is cut to 3 significant bits (quant_blocks.coarse_scales), so the packed float16
sub-block scales hold gguf's values exactly.

Two bounds, as tests/test_model_synthetic.py has them for the legacy types:
- the first position against the oracle with the same int8 activation rounding (act_q8):
  1e-5 of max|logit| (measured 1e-7 to 2.5e-7 over seeds 9-11): what is left is float32 rounding, so any wrong
  code, scale or layout shows here;
- all positions against the float oracle: 3e-2. The difference is the int8 activations of the
  quantized matmul compounding over the layers (and, once a rounding boundary is straddled,
  a flipped code moves later positions); measured 7e-3 to 1.2e-2 over seeds 9-11 (TQ2_0 the
  largest), the bound is 2.5 times that. With realistic (not cut) scales the float16 rounding
  of the IQ sub-scales (2^-11 relative) flips codes the same way: measured up to 1.5e-2.
On the device (the CUDA simulator without one), a small all-MXFP4 model fully offloaded: the
GPU matmuls keep float activations, so its logits are the oracle's to float32 rounding, 1e-4
(tests/test_cuda_offload.py's bound; measured 1.4e-7). The 256-weight types need rows of 256,
which the simulator runs too slowly for the suite (40 s a forward, measured): their CUDA
matmul and dequantization are checked by tests/test_cuda_qmatmul.py and test_cuda_dequant_iq.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

import tests.synthetic as synthetic
from service.gguf_reader import read_gguf
from service.model.config import config_from_metadata
from service.model.forward import Batch, Forward
from service.model.kvcache import KVCache
from service.model.model import Model
from service.model.weights import load_weights
from tests.oracles import model as oracle
from tests.oracles.quant_blocks import IQ_TYPES, QUANTIZED, coarse_scales, random_matrix
from tests.synthetic import MATRICES, Spec, write_model

SELF_TOL, TOL, DEVICE_TOL = 1e-5, 3e-2, 1e-4
MIXED = dict(token_embd=T.TQ1_0, output=T.MXFP4, attn_q=T.IQ2_XXS, attn_k=T.IQ2_XS, attn_v=T.IQ2_S,
             attn_output=T.IQ3_XXS, ffn_gate=T.IQ3_S, ffn_up=T.IQ1_S, ffn_down=T.IQ1_M)
TERNARY = {k: T.TQ2_0 for k in MIXED}
PROMPT = np.random.default_rng(42).integers(0, 72, 12).astype(np.int32)


def test_the_two_models_cover_every_type():
    assert set(MIXED.values()) | set(TERNARY.values()) == set(IQ_TYPES)


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("types", [MIXED, TERNARY], ids=["mixed", "tq2_0"])
def test_logits_match_the_oracle(types, tmp_path, monkeypatch):
    # synthetic writes zero blocks for types outside QUANTIZED (the loader-refusal tests): here the
    # new types get random sane blocks, with float16-exact scales (see the module docstring)
    monkeypatch.setattr(synthetic, "QUANTIZED", QUANTIZED + IQ_TYPES)
    monkeypatch.setattr(synthetic, "random_matrix",
                        lambda qt, n, k, rng, scale=1.0: coarse_scales(random_matrix(qt, n, k, rng, scale), qt))
    spec = Spec("llama", n_layer=2, n_embd=256, n_ff=512, tied=False, eps=1e-5, types=types, seed=9)
    path = write_model(tmp_path / "m.gguf", spec)
    om = oracle.load(path)
    for name, qt in om.qtype.items():
        if om.t[name].ndim == 2:
            assert qt == types[re.sub(r"^blk\.\d+\.", "", name).removesuffix(".weight")], name
            assert np.std(om.t[name]) > 1e-3, name  # real weights, not zero blocks
    f = read_gguf(path)
    cfg = config_from_metadata(f.metadata, str(path))
    fw = Forward(cfg, load_weights(f, cfg), KVCache(cfg, 64, 1), 32)
    n = len(PROMPT)
    got = fw(Batch(PROMPT, np.zeros(n, np.int32), np.arange(n, dtype=np.int32), np.ones(n, bool))).logits.host()
    assert _rel(got[:1], oracle.forward(om, PROMPT[:1], act_q8=True)) <= SELF_TOL
    assert _rel(got, oracle.forward(om, PROMPT)) <= TOL


def test_an_mxfp4_model_offloaded_to_the_device_matches_the_oracle(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "QUANTIZED", QUANTIZED + IQ_TYPES)  # as above: no zero blocks
    spec = Spec("llama", n_layer=1, n_embd=32, n_ff=64, n_head=2, n_head_kv=1, n_vocab=40, tied=False, eps=1e-5,
                types={k: T.MXFP4 for k in MATRICES}, seed=3)
    path = write_model(tmp_path / "m.gguf", spec)
    om = oracle.load(path)
    assert all(np.std(w) > 1e-3 for name, w in om.t.items() if w.ndim == 2), "zero blocks"
    m = Model(path, n_ctx=32, n_seq=1, max_batch=16, n_gpu_layers="all")
    assert m.placement.n_gpu == 1 and m.placement.output_on_gpu
    prompt = [3, 17, 5]  # past the simulator's decode matvec limit (2 tokens): the GEMM
    got = m.forward(Batch(np.array(prompt, np.int32), np.zeros(3, np.int32), np.arange(3, dtype=np.int32),
                          np.ones(3, bool))).logits.host()
    assert _rel(got, oracle.forward(om, prompt)) <= DEVICE_TOL
