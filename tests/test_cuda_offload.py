"""-ngl offload on tiny synthetic models: the GPU path (simulated without a device) against the CPU.

The same file is loaded twice, on the CPU and with layers on the device; prefill (the GEMM
and tiled attention), decode (the matvec), two sequences in one batch, a partial offload and
the device KV cache's copy/read/write must all give the CPU's logits. Weights are F32 or
Q8_0, where the CPU kernels are closest to float arithmetic, so the tolerance can be tight.
"""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from service.model.forward import Batch
from service.model.model import Model
from service.model.placement import place
from tests.oracles import model as oracle
from tests.synthetic import MATRICES, Spec, write_model

# Small enough for the simulator: one forward is a few hundred launches of a few blocks.
SPECS = {
    "llama": Spec("llama", n_layer=2, n_embd=32, n_ff=64, n_head=2, n_head_kv=1, n_vocab=40, eps=1e-5),
    # gemma3: Q/K norms, post-norms, GELU, embedding scale, a sliding window on layer 0.
    "gemma3": Spec("gemma3", n_layer=2, n_embd=32, n_ff=64, n_head=2, n_head_kv=1, head_dim=16, n_vocab=40,
                   sliding_window=3, seed=1),
    # qwen2: Q/K/V biases and a separate output head, quantized.
    "qwen2-q8": Spec("qwen2", n_layer=2, n_embd=32, n_ff=64, n_head=2, n_head_kv=1, n_vocab=40, tied=False,
                     seed=2, types={k: T.Q8_0 for k in MATRICES}),
}
# Relative to the largest logit. Q8_0: the CPU quantizes activations to int8, the GPU does not,
# so against the CPU it is looser, and against the float64 oracle tight for every model.
TOL = {"llama": 2e-5, "gemma3": 2e-5, "qwen2-q8": 5e-2}
ORACLE_TOL = 1e-4
PROMPT = [3, 17, 5, 22, 9]  # past the decode matvec and decode attention limits (2 under the simulator)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("offload")
    return {name: write_model(d / f"{name}.gguf", s) for name, s in SPECS.items()}


def batch(tokens, seqs, pos):
    n = len(tokens)
    return Batch(np.asarray(tokens, np.int32), np.asarray(seqs, np.int32), np.asarray(pos, np.int32),
                 np.ones(n, bool))


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def steps(m: Model):
    """Prefill of PROMPT on sequence 0, then one decode token on sequences 0 and 1 together."""
    out = [m.forward(batch(PROMPT, [0] * len(PROMPT), range(len(PROMPT)))).logits.host()]
    out.append(m.forward(batch([4, 4], [0, 1], [len(PROMPT), 0])).logits.host())
    return out


@pytest.mark.parametrize("name", list(SPECS))
def test_full_offload_matches_cpu(files, name):
    cpu = Model(files[name], n_ctx=32, n_seq=2, max_batch=16)
    gpu = Model(files[name], n_ctx=32, n_seq=2, max_batch=16, n_gpu_layers="all")
    assert gpu.placement.n_gpu == 2 and gpu.placement.output_on_gpu
    got_steps = steps(gpu)
    for got, want in zip(got_steps, steps(cpu)):
        assert got.shape == want.shape
        assert rel(got, want) < TOL[name]
    ref = oracle.forward(oracle.load(files[name]), PROMPT)
    assert rel(got_steps[0], ref) < ORACLE_TOL


def test_partial_offload_and_device_cache_moves(files):
    cpu = Model(files["gemma3"], n_ctx=32, n_seq=3, max_batch=16)
    gpu = Model(files["gemma3"], n_ctx=32, n_seq=3, max_batch=16, n_gpu_layers="1")
    p = gpu.placement
    assert (p.n_gpu, p.output_on_gpu) == (1, False)
    assert p.describe()["layers"] == ["GPU", "CPU"] and p.describe()["output"] == "CPU"
    for got, want in zip(steps(gpu), steps(cpu)):
        assert rel(got, want) < TOL["gemma3"]
    # sequence 0's cache copied to 2 (on the device for layer 0), saved and restored into 1
    k, v = gpu.cache.read(0, len(PROMPT) + 1)
    kc, vc = cpu.cache.read(0, len(PROMPT) + 1)
    np.testing.assert_allclose(k, kc, rtol=1e-4, atol=1e-5)
    gpu.cache.copy(0, 2)
    gpu.cache.write(1, k, v)
    nxt = [gpu.forward(batch([6], [s], [len(PROMPT) + 1])).logits.host() for s in (0, 1, 2)]
    np.testing.assert_allclose(nxt[1], nxt[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nxt[2], nxt[0], rtol=1e-6, atol=1e-6)
    want = cpu.forward(batch([6], [0], [len(PROMPT) + 1])).logits.host()
    assert rel(nxt[0], want) < TOL["gemma3"]


def test_embeddings_hidden_states_from_the_device(files):
    cpu = Model(files["llama"], n_ctx=16, n_seq=1, max_batch=8)
    gpu = Model(files["llama"], n_ctx=16, n_seq=1, max_batch=8, n_gpu_layers="99")
    assert gpu.placement.output_on_gpu  # more than the layer count: the head too, as llama.cpp
    hidden = np.array([True, False, True])
    outs = []
    for m in (cpu, gpu):
        b = batch([1, 2, 3], [0, 0, 0], [0, 1, 2])
        b.want[:] = False
        b.hidden = hidden
        outs.append(m.forward(b))
        assert outs[-1].logits.shape == (0, 40) and outs[-1].hidden.shape == (2, 32)
    np.testing.assert_allclose(outs[1].hidden, outs[0].hidden, rtol=1e-5, atol=1e-5)


def test_placement_rules(monkeypatch):
    from kernels.cuda import launch

    assert place("auto", 30).n_gpu == (30 if launch.has_gpu() else 0)  # never the simulator
    assert place("0", 30).n_gpu == 0 and place("all", 30).n_gpu == 30
    p = place("12", 30)
    assert (p.n_gpu, p.output_on_gpu, p.warning) == (12, False, "")
    assert place("31", 30).output_on_gpu and not place("30", 30).output_on_gpu
    assert place("all", 30, device="none").n_gpu == 0  # -dev none turns offloading off
    assert place("all", 30, device="CUDA0").n_gpu == 30
    assert "one device; using CUDA0" in place("all", 30, device="CUDA0,CUDA1").warning
    with pytest.raises(ValueError, match="no device CUDA3"):
        place("all", 30, device="CUDA3")
    monkeypatch.setattr(launch, "usable", lambda: False)
    p = place("12", 30)
    assert p.n_gpu == 0 and "no CUDA device" in p.warning
    monkeypatch.setattr(launch, "has_gpu", lambda: True)
    monkeypatch.setattr(launch, "select", lambda i: f"Test GPU {i}")
    monkeypatch.setattr(launch, "toolchain_error", lambda: "")
    p = place("auto", 30)
    assert (p.n_gpu, p.output_on_gpu, p.device) == (30, True, "Test GPU 0")
    assert place("auto", 30, device="CUDA2").device == "Test GPU 2"
    # a device without NVVM: the CPU, with a warning saying what to install, for auto and a count
    monkeypatch.setattr(launch, "toolchain_error", lambda: "NvvmSupportError: libNVVM cannot be found")
    monkeypatch.setattr(launch, "usable", lambda: True)
    for req in ("auto", "12"):
        p = place(req, 30)
        assert p.n_gpu == 0 and "libNVVM cannot be found" in p.warning and "llamajit[cuda]" in p.warning


def test_typed_cache_on_the_device(tmp_path):
    """A q8_0 / q4_1 cache with the layer on the device: the same logits as the CPU with those cache
    types (up to a block code that rounds the other way), and the device rows move through
    read, write and a context shift (kernels.cuda.kv, service.model.kvcache). head_dim 64: keys
    and values are rotated (kernels.cuda.hadamard)."""
    from kernels import kv_types as kt
    from kernels.kv_quant import dequantize_rows

    f = write_model(tmp_path / "t.gguf", Spec("llama", n_layer=1, n_embd=64, n_ff=32, n_head=1, n_head_kv=1,
                                               n_vocab=40, eps=1e-5, seed=3))
    types = ("q8_0", "q4_1")
    cpu = Model(f, n_ctx=32, n_seq=2, max_batch=16, cache_types=types)
    gpu = Model(f, n_ctx=32, n_seq=2, max_batch=16, n_gpu_layers="1", cache_types=types)
    assert gpu.cache.k[0].dtype == np.uint8 and gpu.cache.k_half[0].dtype == np.float16
    assert (gpu.cache.rot_k, gpu.cache.rot_v) == (64, 64)
    for got, want in zip(steps(gpu), steps(cpu)):
        assert rel(got, want) < 1e-2
    n = len(PROMPT) + 1
    k, v = gpu.cache.read(0, n)
    kc, vc = cpu.cache.read(0, n)
    assert k.dtype == kc.dtype == np.uint8 and k.shape == kc.shape
    np.testing.assert_allclose(dequantize_rows(k, kt.Q8_0), dequantize_rows(kc, kt.Q8_0), atol=0.05)
    gpu.cache.write(1, k, v)
    np.testing.assert_array_equal(gpu.cache.read(1, n)[0], k)
    for m in (cpu, gpu):
        m.cache.shift(0, 1, 2)
    got = gpu.forward(batch([6], [0], [n - 2])).logits.host()
    want = cpu.forward(batch([6], [0], [n - 2])).logits.host()
    assert rel(got, want) < 1e-2


# The offloaded layers take the CPU's RoPE tables (YaRN and llama3 factors included) and read
# fused QKV / gate-up matrices generically: phi3 and a YaRN llama against the CPU. (gemma2 adds only
# soft-caps, which test_cuda_attention and test_cuda_activation cover, to gemma3's path: measured to
# pass here too, left out for the simulator's time.)
MORE = {
    "llama-yarn": (Spec("llama", n_layer=2, n_embd=32, n_ff=64, n_head=2, n_head_kv=1, n_vocab=40, eps=1e-5, seed=3),
                   {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
                    "llama.rope.scaling.original_context_length": 8}),
    "phi3": (Spec("phi3", n_layer=2, n_embd=32, n_ff=64, n_head=2, n_head_kv=1, n_vocab=40, tied=False, seed=4), {}),
}


@pytest.mark.parametrize("name", list(MORE))
def test_offload_of_scaled_rope_and_more_archs_matches_cpu(tmp_path, name):
    spec, meta = MORE[name]
    path = write_model(tmp_path / f"{name}.gguf", spec, meta=meta)
    cpu = Model(path, n_ctx=32, n_seq=2, max_batch=16)
    gpu = Model(path, n_ctx=32, n_seq=2, max_batch=16, n_gpu_layers="all")
    assert gpu.placement.n_gpu == 2
    for got, want in zip(steps(gpu), steps(cpu)):
        assert rel(got, want) < 2e-5
