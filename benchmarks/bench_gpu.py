"""GPU benchmark: -ngl all against the CPU runtime in the same run, and against the card's
memory bandwidth.

For each real model: prefill tokens/s (a 256-token prompt) and decode tokens/s (64 tokens,
one sequence) with every layer and the head on the device, the same on the CPU, their
ratio, and the decode step's achieved bandwidth (device weight bytes plus the KV cache read
per token, times tokens/s) as a share of the card's peak (memory clock x bus width x 2).
It also times one small kernel launch from Python (numba's per-launch host cost) and prints
the floor it puts under a decode step: launches per step (9 per layer + 4, see
service/model/offload.py) times that cost.
Needs a CUDA device: exits 2 with a message without one (the simulator does not count).
Usage: python benchmarks/bench_gpu.py [--models smollm2,gemma3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
N_PROMPT, N_DECODE = 256, 64


def run(m, ids) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) for one sequence, after one untimed warm-up pass."""
    for timed in (False, True):
        m.cache.clear(0)
        t0 = time.perf_counter()
        logits = m.eval(0, ids)
        t1 = time.perf_counter()
        for _ in range(N_DECODE if timed else 2):
            logits = m.eval(0, [int(np.argmax(logits))])
        t2 = time.perf_counter()
    return len(ids) / (t1 - t0), N_DECODE / (t2 - t1)


def launch_cost(n: int = 2000) -> float:
    """Seconds per launch of a one-element kernel, synchronised once at the end."""
    from numba import cuda

    from kernels.cuda.activation import add_bias

    out, vec = cuda.device_array((1, 1), np.float32), cuda.to_device(np.zeros(1, np.float32))
    add_bias(out, vec)  # compile
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        add_bias(out, vec)
    cuda.synchronize()
    return (time.perf_counter() - t0) / n


def peak_bandwidth() -> float | None:
    """The card's memory bandwidth in bytes/s from its attributes, or None if not reported."""
    from numba import cuda

    d = cuda.get_current_device()
    clock_khz = getattr(d, "MEMORY_CLOCK_RATE", None)
    bus_bits = getattr(d, "GLOBAL_MEMORY_BUS_WIDTH", None)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8  # double data rate


def main() -> int:
    from kernels.cuda import launch
    from service.model.model import Model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    if not launch.has_gpu():
        print("bench_gpu: no CUDA device (numba.cuda sees none); nothing measured", file=sys.stderr)
        return 2
    peak = peak_bandwidth()
    print(f"device: {launch.select(0)}; peak memory bandwidth "
          f"{peak / 1e9:.0f} GB/s" if peak else "peak bandwidth not reported")
    per_launch = launch_cost()
    print(f"one kernel launch from Python: {per_launch * 1e6:.1f} us")
    ids = np.random.default_rng(0).integers(100, 5000, N_PROMPT).tolist()
    for name in a.models.split(","):
        path = ROOT / "models" / MODELS[name]
        gpu = Model(path, n_ctx=N_PROMPT + N_DECODE + 8, n_seq=1, max_batch=N_PROMPT, n_gpu_layers="all")
        cpu = Model(path, n_ctx=N_PROMPT + N_DECODE + 8, n_seq=1, max_batch=N_PROMPT)
        (gp, gd), (cp, cd) = run(gpu, ids), run(cpu, ids)
        w = gpu.weights
        mats = [m for L in w.layers for m in (*L.wqkv, L.wo, *L.wgate_up, L.wdown)] + [w.output]
        weight_bytes = sum(m.nbytes for m in mats)
        c = gpu.cfg  # mean KV cache read per decode token: keys and values of ~N_PROMPT + N_DECODE/2 positions
        kv_bytes = 2 * c.n_layer * c.n_head_kv * c.head_dim * 4 * (N_PROMPT + N_DECODE // 2)
        achieved = (weight_bytes + kv_bytes) * gd
        share = f", {achieved / peak:.1%} of peak" if peak else ""
        floor = (9 * c.n_layer + 4) * per_launch
        share += f"; launch floor {floor * 1e3:.2f} ms/token = {1 / floor:.0f} tok/s at most"
        print(f"{name}: prefill {gp:.0f} tok/s GPU vs {cp:.0f} CPU ({gp / cp:.2f}x); "
              f"decode {gd:.1f} tok/s GPU vs {cd:.1f} CPU ({gd / cd:.2f}x); "
              f"decode reads {(weight_bytes + kv_bytes) / 1e6:.1f} MB/token = {achieved / 1e9:.1f} GB/s{share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
