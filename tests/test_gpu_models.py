"""Both real models fully offloaded to a real CUDA device (-ngl all), against llama.cpp.

Parity is what tests/test_parity.py defines for the CPU runtime (prompt tokens, logits at
every step within its per-model bounds, greedy ids at every clear step, the step-0 top-k
order), on the same reference lines. Skipped without a device: the CUDA simulator would take
hours on these models.
"""

from functools import lru_cache

import pytest

from kernels.cuda import launch
from service.model.model import Model
from tests.test_parity import MODELS, ROOT, cases, check_parity

pytestmark = pytest.mark.skipif(not launch.has_gpu(), reason="no CUDA device (the simulator does not count)")


@lru_cache(maxsize=None)
def gpu_model(name: str) -> Model:
    return Model(ROOT / "models" / MODELS[name], n_ctx=256, n_seq=1, max_batch=64, n_gpu_layers="all")


@pytest.mark.parametrize("name", list(MODELS))
def test_everything_is_offloaded(name):
    p = gpu_model(name).placement
    assert p.n_gpu == p.n_layer and p.output_on_gpu and p.device
    assert set(p.describe()["layers"]) == {"GPU"}


@pytest.mark.parametrize("name,ref", list(cases()))
def test_offloaded_greedy_and_logits_match_llama_cpp(name, ref):
    check_parity(gpu_model(name), ref, name)


@pytest.mark.parametrize("name", list(MODELS))
def test_partial_offload_agrees_with_full(name):
    """Half the layers on the device: the same greedy continuation as everything there."""
    full = gpu_model(name)
    half = Model(ROOT / "models" / MODELS[name], n_ctx=64, n_seq=1, max_batch=64,
                 n_gpu_layers=str(full.cfg.n_layer // 2))
    assert 0 < half.placement.n_gpu < half.cfg.n_layer and not half.placement.output_on_gpu
    ids = full.tokenizer.tokenize("The capital of France is", add_special=True, parse_special=True)
    outs = []
    for m in (full, half):
        m.cache.clear(0)
        logits, got = m.eval(0, ids), []
        for _ in range(8):
            got.append(int(logits.argmax()))
            logits = m.eval(0, [got[-1]])
        outs.append(got)
    assert outs[0] == outs[1]
