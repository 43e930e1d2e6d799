"""Compile the kernels a server runs into Numba's cache, ahead of any server: `python -m
service.precompile MODEL`.

Loads MODEL and generates a few tokens for two sequences at once, one with the default sampler
chain and one greedily ignoring EOS (the server's start-up warmup and the load tests' logit bias):
the load-time packing, prefill, batched decode and sampler kernels, for both of the server's
default KV cache types (-ctk/-ctv f16) and the in-process default (f32), which share one compiled
layer. Used by the image build (Dockerfile) and by the test session (tests/conftest.py).

Why the tests need it: a kernel compiled in a process and the same kernel loaded from the cache
round differently (measured: 7e-6 on SmolLM2's first hidden state, up to 0.59 in a logit after 30
layers). A test that compares a server's numbers with its own in-process forward pass needs both
processes to run the same code, and when every process loads it from the cache they do.
"""

from __future__ import annotations

import argparse
import time


def precompile(model_path: str) -> int:
    """Compile (or load) the serving kernels for model_path; the number of tokens sampled."""
    from service.model.generate import generate
    from service.model.model import Model
    from service.sampling import Sampler, SamplingParams

    steps = 0
    for types in (("f16", "f16"), ("f32", "f32")):
        m = Model(model_path, n_ctx=256, n_seq=2, max_batch=64, cache_types=types)
        ids = m.tokenizer.tokenize("Hello, how are you?")
        samplers = [Sampler(p, m.cfg.n_vocab, eog_ids=m.tokenizer.eog_ids, n_ctx=m.n_ctx)
                    for p in (SamplingParams(), SamplingParams(temperature=0.0, n_probs=2, ignore_eos=True))]
        steps += sum(len(s) for s in generate(m, [ids, ids[:3]], n_predict=4, samplers=samplers))
    return steps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m service.precompile", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a GGUF file")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    steps = precompile(args.model)
    print(f"precompiled the kernels ({steps} tokens sampled, {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
