"""The forward pass on tiny synthetic models of each architecture, against the float64
NumPy oracle (tests/oracles/model.py), and the batch / KV-cache invariants.

Tolerances, as max|ours - ref| / max|ref| over all logits of a 20-token prompt:
- F32 and F16 weights: 2e-5. The forward runs in float32 (weights are exact in both, F16
  widened), so the only differences are float32 rounding (about 6e-8 per operation,
  growing with sqrt of the dot length) and the fast exp/tanh kernels (4e-7 relative);
  measured 1e-7 to 5e-7 over archs and seeds, so the bound leaves a 40x margin and still
  catches any real mistake (a wrong RoPE pair, base, mask or norm moves logits by > 1e-2,
  see test_gemma3_window_and_global_layers_matter).
- Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K): 2e-2. The oracle uses the same
  dequantized weights but float activations; quantized matmuls (ours and llama.cpp's) round
  activations to int8 per 32 values (up to half a step of 1/127 of the block's max), about
  0.3% per product, compounding over the layers: measured 3e-3 to 8e-3 over archs and seeds.
  That rounding is the whole error for the legacy types: against the oracle with the same
  int8 rounding (act_q8) the first position agrees to 1e-5 (measured 1e-7). Later positions
  are not compared so: where float32 and float64 activations straddle a rounding boundary
  (about one code in 40000), a code flips and moves that token's K/V, and the logits of the
  positions that attend to it, by about 3e-3. Q4_K keeps only the loose bound: the packed
  sub-scales are float16 (kernels/packing.py), about 3e-3 at this level.
- Forward against Forward (incremental decode, mixed batches, cache edits): 1e-5 — the same
  float32 operations in another order or another attention path (tiled prefill against
  per-token decode).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from service.gguf_reader import read_gguf
from service.model.config import config_from_metadata
from service.model.forward import Batch, Forward
from service.model.kvcache import KVCache
from service.model.weights import load_weights
from tests.oracles import model as oracle
from tests.synthetic import MATRICES, Spec, write_model

FLOAT_TOL, QUANT_TOL, SELF_TOL = 2e-5, 2e-2, 1e-5
LEGACY = dict(token_embd=T.Q8_0, output=T.Q8_0, attn_q=T.Q8_0, attn_k=T.Q4_0, attn_v=T.Q5_0, attn_output=T.Q4_1,
              ffn_gate=T.Q4_0, ffn_up=T.Q8_0, ffn_down=T.Q4_0)
N_VOCAB = 72
SPECS = {
    # head_dim 16: per-(token, head) attention everywhere.
    "llama": Spec("llama", eps=1e-5),
    # 7 layers: 0-4 and 6 use the window of 4 and RoPE base 10000, layer 5 is global (1e6).
    # head_dim 64 != n_embd / n_head: tiled prefill attention, with the window.
    "gemma3": Spec("gemma3", n_layer=7, n_head=2, n_head_kv=1, head_dim=64, sliding_window=4, seed=1),
    "qwen2": Spec("qwen2", n_embd=128, n_ff=160, n_head=2, n_head_kv=1, tied=False, rope_base=1e6, seed=2),
    "qwen3": Spec("qwen3", head_dim=64, seed=3),
    "llama-f16": Spec("llama", types={k: T.F16 for k in MATRICES}, seed=4),
}
ARCHS = ["llama", "gemma3", "qwen2", "qwen3"]
Q4_K_SPEC = Spec("llama", n_embd=256, n_ff=512, n_head=4, n_head_kv=4, seed=5, types=dict(
    token_embd=T.Q4_K, attn_q=T.Q4_K, attn_k=T.Q8_0, attn_v=T.Q4_K, attn_output=T.Q4_0,
    ffn_gate=T.Q4_K, ffn_up=T.Q4_K, ffn_down=T.Q4_K))
PROMPT = np.random.default_rng(42).integers(0, N_VOCAB, 20).astype(np.int32)


class Model:
    def __init__(self, path):
        self.path = path
        self.file = read_gguf(path)  # the weights are views of its map: keep it open
        self.cfg = config_from_metadata(self.file.metadata, str(path))
        self.w = load_weights(self.file, self.cfg)

    def forward(self, n_seq: int = 3, n_ctx: int = 64, max_tokens: int = 32) -> Forward:
        return Forward(self.cfg, self.w, KVCache(self.cfg, n_ctx, n_seq), max_tokens)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("synthetic")
    cache = {}

    def get(name: str, spec: Spec | None = None, **kw) -> Model:
        if name not in cache:
            cache[name] = Model(write_model(d / f"{name}.gguf", spec or SPECS[name], **kw))
        return cache[name]

    return get


def run(fw: Forward, seq: int, tokens, pos0: int = 0) -> np.ndarray:
    """One segment of a sequence continuing at pos0: logits of every token."""
    n = len(tokens)
    return fw(Batch(np.asarray(tokens, np.int32), np.full(n, seq, np.int32),
                    np.arange(pos0, pos0 + n, dtype=np.int32), np.ones(n, bool))).logits.host()


def fresh(m: Model, tokens) -> np.ndarray:
    return run(m.forward(), 0, tokens)


def rel(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / np.abs(ref).max())


# -------------------------------------------------------------------- against the oracle

@pytest.mark.parametrize("name", [*ARCHS, "llama-f16"])
def test_matches_oracle(models, name):
    m = models(name)
    assert m.cfg.arch == SPECS[name].arch
    ref = oracle.forward(oracle.load(m.path), PROMPT)
    assert rel(fresh(m, PROMPT), ref) <= FLOAT_TOL


@pytest.mark.parametrize("name", ARCHS)
def test_quantized_matches_oracle(models, name):
    m = models(f"{name}-legacy", dataclasses.replace(SPECS[name], types=LEGACY))
    om = oracle.load(m.path)
    got = fresh(m, PROMPT)
    assert rel(got, oracle.forward(om, PROMPT)) <= QUANT_TOL
    assert rel(got[:1], oracle.forward(om, PROMPT[:1], act_q8=True)) <= SELF_TOL


def test_q4_k_matches_oracle(models):
    m = models("q4_k", Q4_K_SPEC)
    assert rel(fresh(m, PROMPT), oracle.forward(oracle.load(m.path), PROMPT)) <= QUANT_TOL


def test_gemma3_window_and_global_layers_matter(models):
    """The gemma3 check above is sensitive to the window, to which layers are global, and
    to the two RoPE bases: each changes the oracle's logits far beyond FLOAT_TOL."""
    m = models("gemma3")
    assert m.cfg.swa_layers == (True,) * 5 + (False, True) and m.cfg.sliding_window == 4
    om = oracle.load(m.path)
    ref = oracle.forward(om, PROMPT)

    class AllLocal(oracle.OracleModel):
        def swa(self, il):
            return True

    for variant in (dataclasses.replace(om, window=0), dataclasses.replace(om, rope_base=10000.0),
                    AllLocal(**{f.name: getattr(om, f.name) for f in dataclasses.fields(om)})):
        assert rel(oracle.forward(variant, PROMPT), ref) > 100 * FLOAT_TOL


# -------------------------------------------------------------------- batches and the cache

@pytest.mark.parametrize("name", ARCHS)
def test_incremental_decode_equals_prefill(models, name):
    m = models(name)
    full = fresh(m, PROMPT)
    fw = m.forward()
    parts = [run(fw, 0, PROMPT[:8])]
    parts += [run(fw, 0, PROMPT[i : i + 1], i) for i in range(8, len(PROMPT))]
    assert rel(np.concatenate(parts), full) <= SELF_TOL


@pytest.mark.parametrize("name", ARCHS)
def test_cached_prompt_gives_the_bits_of_the_whole_prompt(models, name):
    """What a server's prompt cache does: the prompt's KV but for its last token reused, that
    token evaluated alone. Its logits are exactly those of the whole prompt at once, so a cached
    prompt never changes an answer (before the attention's last-query rule, they differed by up
    to 0.34 in SmolLM2's logits, enough to flip greedy choices at near-ties)."""
    m = models(name)
    fw = m.forward()
    full = run(fw, 0, PROMPT)
    fw.cache.copy(0, 1)
    fw.cache.keep(1, len(PROMPT) - 1)
    np.testing.assert_array_equal(run(fw, 1, PROMPT[-1:], len(PROMPT) - 1), full[-1:])


@pytest.mark.parametrize("name", ARCHS)
def test_two_sequences_in_one_batch(models, name):
    """A prefill chunk of one sequence and a decode token of another, in one call."""
    m = models(name)
    a, b = PROMPT[:11], PROMPT[::-1][:12].copy()
    ref_a, ref_b = fresh(m, a), fresh(m, b)
    fw = m.forward()
    run(fw, 2, a[:10])
    n = 1 + len(b)
    batch = Batch(np.concatenate([a[10:], b]).astype(np.int32), np.array([2] + [0] * len(b), np.int32),
                  np.array([10, *range(len(b))], np.int32), np.ones(n, bool))
    logits = fw(batch).logits.host()
    assert rel(logits[:1], ref_a[10:]) <= SELF_TOL
    assert rel(logits[1:], ref_b) <= SELF_TOL
    # only the wanted rows come back, in batch order
    fw2 = m.forward()
    run(fw2, 2, a[:10])
    want = np.zeros(n, bool)
    want[[0, n - 1]] = True
    got = fw2(dataclasses.replace(batch, want=want)).logits.host()
    assert rel(got, np.stack([ref_a[10], ref_b[-1]])) <= SELF_TOL


@pytest.mark.parametrize("name", ARCHS)
def test_kv_keep_clear_copy(models, name):
    m = models(name)
    fw = m.forward()
    # keep: the first 10 tokens stay, a different continuation follows
    run(fw, 0, PROMPT[:16])
    other = np.concatenate([PROMPT[:10], PROMPT[::-1][:6]])
    fw.cache.keep(0, 10)
    assert fw.cache.length[0] == 10
    assert rel(run(fw, 0, other[10:], 10), fresh(m, other)[10:]) <= SELF_TOL
    # clear: a new prompt from position 0
    fw.cache.clear(0)
    assert rel(run(fw, 0, PROMPT[5:17]), fresh(m, PROMPT[5:17])) <= SELF_TOL
    # copy: both sequences continue identically, then independently
    fw.cache.copy(0, 1)
    x, y, z = PROMPT[:3]
    two = fw(Batch(np.array([x, x], np.int32), np.array([0, 1], np.int32),
                   np.array([12, 12], np.int32), np.ones(2, bool))).logits.host()
    np.testing.assert_array_equal(two[0], two[1])
    base = list(PROMPT[5:17]) + [x]
    assert rel(two[:1], fresh(m, base)[-1:]) <= SELF_TOL
    l1 = run(fw, 1, [z], 13)
    l0 = run(fw, 0, [y], 13)
    assert rel(l0, fresh(m, base + [y])[-1:]) <= SELF_TOL
    assert rel(l1, fresh(m, base + [z])[-1:]) <= SELF_TOL


def test_positions_must_continue_the_cache(models):
    fw = models("llama").forward()
    run(fw, 0, PROMPT[:4])
    with pytest.raises(ValueError, match="do not continue"):
        run(fw, 0, PROMPT[4:6], 5)


# -------------------------------------------------------------------- output head

def test_tied_and_separate_head(models):
    tied = models("llama")
    assert "output.weight" not in tied.file.tensors
    same = models("llama-same-head", dataclasses.replace(SPECS["llama"], tied=False), same_head=True)
    sep = models("llama-own-head", dataclasses.replace(SPECS["llama"], tied=False))
    np.testing.assert_array_equal(fresh(same, PROMPT), fresh(tied, PROMPT))
    own = fresh(sep, PROMPT)
    assert rel(own, oracle.forward(oracle.load(sep.path), PROMPT)) <= FLOAT_TOL
    assert rel(own, fresh(tied, PROMPT)) > 0.1  # the separate head is really used
