"""longrope (Phi-3/3.5 128k) against llama.cpp itself: tests/rope_models.py's phi3-longrope (two
factor tables, original context 320, the converter's attention factor) against the greedy tokens
and top-10 log-probabilities llama-server gave at -c 256, 300 and 512
(tests/fixtures/rope_scaling_llamacpp.json, from tests/fixtures/record_rope_scaling.py).

llama.cpp takes the long table when its context per sequence exceeds the original context, and
that context is -c rounded up to a multiple of 256: -c 256 runs the short table, -c 300 (512) and
-c 512 the long one. Bound and token rule as tests/test_rope_scaling.py (4e-3; measured maxima
printed by test_without_the_factors_or_with_the_other_table_is_far_outside_the_bound). The same,
as far as the RoPE table goes, holds for layers on the GPU, which take the CPU's table: checked here
under the simulator against the CPU and against llama.cpp's logprobs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from service.gguf_reader import read_gguf
from service.model.config import ModelError, config_from_metadata
from service.model.model import Model
from service.model.weights import llamacpp_ctx_seq, load_weights, rope_factors
from tests.llamacpp_parity import compare, score
from tests.rope_models import LONGROPE, LONGROPE_ATTN, LONGROPE_RUNS, N_ORIG, write_case
from tests.synthetic import Spec, write_model
from tests.test_engine import run, started
from tests.test_state import state

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "rope_scaling_llamacpp.json").read_text())
BOUND = 4e-3
ENTRIES = list(LONGROPE_RUNS)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = write_case(tmp_path_factory.mktemp("longrope"), "phi3-longrope")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert all(FIXTURE["models"][e]["sha256"] == digest for e in ENTRIES), \
        "tests/rope_models.py writes another file than the one recorded: rerun the recorder"
    f = read_gguf(path)
    cfg = config_from_metadata(f.metadata, str(path))
    return path, cfg, load_weights(f, cfg)


def ctx_seq(entry: str) -> int:
    return llamacpp_ctx_seq(FIXTURE["models"][entry]["n_ctx"])


def test_the_file_reads_as_llamacpp_reads_it(model):
    _, cfg, w = model
    assert cfg.rope_n_orig == N_ORIG and cfg.rope_ext_factor == 0.0 and cfg.rope_scale == 1.0
    assert cfg.rope_attn_factor == pytest.approx(LONGROPE_ATTN, rel=1e-7) and LONGROPE_ATTN > 1.2
    assert w.rope_freqs is None and w.rope_long.shape == w.rope_short.shape == (cfg.rope_dims // 2,)
    assert [ctx_seq(e) for e in ENTRIES] == [256, 512, 512]
    assert rope_factors(cfg, w, 256) is w.rope_short and rope_factors(cfg, w, 512) is w.rope_long
    assert rope_factors(cfg, w, N_ORIG) is w.rope_short and rope_factors(cfg, w, N_ORIG + 1) is w.rope_long


@pytest.mark.parametrize("entry", ENTRIES)
def test_matches_llamacpp(model, entry):
    _, cfg, w = model
    for case in FIXTURE["models"][entry]["cases"]:
        worst, agree = compare(cfg, w, case, BOUND, ctx_seq(entry))
        print(entry, case["prompt"], worst, agree)
        assert worst <= BOUND, (entry, case["prompt"], worst)
        assert agree == len(case["tokens"]), (entry, case["prompt"], agree)


@pytest.mark.parametrize("entry", ENTRIES)
def test_without_the_factors_or_with_the_other_table_is_far_outside_the_bound(model, entry):
    """Plain RoPE (what loading without the tables would run), the other table (the wrong choice of
    context) and the tables without the attention factor all fail the comparison: the test can fail."""
    _, cfg, w = model
    cases, n = FIXTURE["models"][entry]["cases"], ctx_seq(entry)
    swapped = dataclasses.replace(w, rope_long=w.rope_short, rope_short=w.rope_long)
    wrong = {"plain": (cfg, dataclasses.replace(w, rope_long=None, rope_short=None)),
             "other table": (cfg, swapped),
             "no attn factor": (dataclasses.replace(cfg, rope_attn_factor=1.0), w)}
    print(entry, "right:", max(compare(cfg, w, c, BOUND, n)[0] for c in cases))
    for what, (c2, w2) in wrong.items():
        results = [compare(c2, w2, c, BOUND, n) for c in cases]
        print(entry, what, [round(r[0], 3) for r in results], [r[1] for r in results])
        assert min(r[0] for r in results) > 20 * BOUND, what
        assert any(agree < len(c["tokens"]) for (_, agree), c in zip(results, cases)), what


def test_the_server_picks_the_table_by_llamacpps_context_per_sequence():
    """-c rounded up to 256; without a unified cache, that divided by -np and rounded up again."""
    assert state("-c", "300", "-np", "1").slot_ctx(llamacpp=True) == 512
    assert state("-c", "256", "-np", "1").slot_ctx(llamacpp=True) == 256
    assert state("-c", "513", "-np", "2").slot_ctx(llamacpp=True) == 512  # 768 / 2 = 384 -> 512
    assert state("-c", "513", "-np", "2").slot_ctx() == 256  # (the slot's own context is unchanged)
    assert state("-c", "512", "-np", "2").slot_ctx(llamacpp=True) == 256
    assert state("-c", "300").slot_ctx(llamacpp=True) == 512  # auto -np: one unified pool


def log_softmax(lg: np.ndarray) -> np.ndarray:
    lg = lg.astype(np.float64) - lg.max(axis=1, keepdims=True)
    return lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))


def run_model(m: Model, tokens: list[int]) -> np.ndarray:
    from tests.test_cuda_offload import batch

    return log_softmax(m.forward(batch(tokens, [0] * len(tokens), range(len(tokens)))).logits.host())


def test_a_loaded_model_takes_the_table_of_its_context(model):
    """Model's own choice, from -c as llama.cpp pads it (300 -> 512: the long table, though 300 is
    under the original 320), against llama.cpp's logprobs at -c 300 and at -c 256."""
    path, _, _ = model
    for entry, n_ctx in (("phi3-longrope-c300", 300), ("phi3-longrope-c256", 256)):
        m = Model(path, n_ctx=n_ctx, n_seq=1, max_batch=64)
        assert m.forward.rope_freqs is (m.weights.rope_long if n_ctx == 300 else m.weights.rope_short)
        case = FIXTURE["models"][entry]["cases"][1]
        worst, agree = score(run_model(m, case["prompt"] + case["tokens"][:-1]), case, BOUND)
        assert worst <= BOUND and agree == len(case["tokens"]), (entry, worst, agree)


def test_layers_on_the_gpu_match_llamacpp(model):
    """Every layer and the head offloaded (the simulator without a device): the GPU's RoPE reads the
    table the CPU built, so each context picks its table as on the CPU, and with the long table the
    first 4 steps of the shortest prompt must match llama.cpp (28 tokens: about 20 s under the
    simulator; the short table runs the same device code, so it is not run again)."""
    path, _, _ = model
    for entry in ("phi3-longrope-c256", "phi3-longrope-c512"):
        gpu = Model(path, n_ctx=64, n_seq=1, max_batch=64, n_gpu_layers="all", n_ctx_seq=ctx_seq(entry))
        assert gpu.placement.n_gpu == gpu.cfg.n_layer
        long = entry.endswith("512")
        assert gpu.forward.rope_freqs is (gpu.weights.rope_long if long else gpu.weights.rope_short)
    full = FIXTURE["models"][entry]["cases"][0]
    case = {"prompt": full["prompt"], "tokens": full["tokens"][:4], "steps": full["steps"][:4]}
    worst, agree = score(run_model(gpu, case["prompt"] + case["tokens"][:-1]), case, BOUND)
    assert worst <= BOUND and agree == len(case["tokens"]), (entry, worst, agree)


def test_context_shift_is_off_with_longrope(tmp_path):
    """kvcache.shift turns keys back with plain RoPE, not by the factor tables: a longrope model stops
    at the context's end as without --context-shift (as for llama3 and YaRN)."""
    spec, meta, extra = LONGROPE["phi3-longrope"]
    m = Model(write_model(tmp_path / "s.gguf", spec, meta=meta, extra=extra), n_ctx=32, n_seq=2, max_batch=8)
    e = started(m, ctx_shift=True)
    try:
        final = run(e, prompt=tuple(range(2, 22)), n_predict=50, n_keep=4)[-1]
        assert final.truncated and 20 + final.n_predicted == 32
    finally:
        e.shutdown()


@pytest.mark.parametrize("arch,meta,extra,named", [
    # llama.cpp reads the tables for llama too; here only phi3 has been checked against it
    ("llama", {}, True, "rope_factors_long.weight"),
    ("llama", {"llama.rope.scaling.type": "longrope"}, False, "unsupported rope scaling type 'longrope' for llama"),
    ("phi3", {"phi3.rope.scaling.type": "su"}, True, "unsupported rope scaling type 'su' for phi3"),
])
def test_what_is_not_implemented_is_still_refused(tmp_path, arch, meta, extra, named):
    tables = {"rope_factors_long.weight": np.ones(8), "rope_factors_short.weight": np.ones(8)}
    s = Spec(arch, tied=arch == "llama")
    path = write_model(tmp_path / "m.gguf", s, meta=meta, extra=tables if extra else None)
    with pytest.raises(ModelError, match=named):
        f = read_gguf(path)
        load_weights(f, config_from_metadata(f.metadata, str(path)))


def test_a_longrope_type_key_on_phi3_reads_as_linear(tmp_path):
    spec, meta, extra = LONGROPE["phi3-longrope"]
    path = write_model(tmp_path / "m.gguf", spec, meta={**meta, "phi3.rope.scaling.type": "longrope"}, extra=extra)
    f = read_gguf(path)
    cfg = config_from_metadata(f.metadata, str(path))
    assert cfg.rope_scale == 1.0 and cfg.rope_ext_factor == 0.0 and cfg.rope_n_orig == N_ORIG
