"""KV cache types (-ctk / -ctv): memory, decode speed at a long context, and logits against f32.

Per model and cache type, one server at -c 4096 -np 1 (llamajit, and llama.cpp's llama-server
beside it with --peer): a prompt that fills most of the context, then N greedy tokens;
reported: RSS after it (VmRSS) and the peak (VmHWM), MiB, and the decode rate at that context
(the server's own timings.predicted_per_second, and tokens per CPU-second of the server process
over the decode request, which a busy machine disturbs less). Then, in-process, the logits of every step
of a teacher-forced sequence (the same tokens fed to every type) against f32: the largest
|difference| and how often the argmax agrees.

    python benchmarks/bench_kv_types.py [--types f32,f16,q8_0] [--models smollm2,gemma3] [--peer PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.serving import start_server, status_mib  # noqa: E402
from tests.server_proc import GEMMA3, SMOLLM2, free_port  # noqa: E402

PEER = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin" / "llama-server"
MODELS = {"smollm2": SMOLLM2, "gemma3": GEMMA3}
CTX = 4096
TEXT = ("The history of the Roman empire spans many centuries, from the founding of the city to the fall of "
        "Constantinople. ")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (a measure that a busy machine disturbs
    less than the wall clock)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_server(model: Path, t: str, peer: Path | None, n_predict: int, fill: int, threads: int) -> dict:
    port = free_port()
    head = [str(peer)] if peer else [sys.executable, "-m", "service.cli"]
    cmd = [*head, "-m", str(model), "--port", str(port), "-c", str(CTX), "-np", "1", "-ctk", t, "-ctv", t, "-t",
           str(threads)]
    p = start_server(cmd, port, timeout=900)
    try:
        url = f"http://127.0.0.1:{port}"
        toks = httpx.post(url + "/tokenize", json={"content": TEXT * 200}).json()["tokens"][:fill]
        body = {"prompt": toks, "n_predict": 1, "temperature": 0, "ignore_eos": True, "cache_prompt": True}
        first = httpx.post(url + "/completion", json=body, timeout=3600).json()  # fills the cache
        cpu0 = _cpu_seconds(p.pid)
        r = httpx.post(url + "/completion", json={**body, "n_predict": n_predict}, timeout=3600).json()
        cpu = _cpu_seconds(p.pid) - cpu0  # the prompt came from the cache: this is decode
        mem = status_mib(p.pid)
        return {"rss_mib": round(mem["VmRSS"]), "peak_mib": round(mem["VmHWM"]),
                "decode_tps": round(r["timings"]["predicted_per_second"], 1),
                "decode_per_cpu_s": round(r["timings"]["predicted_n"] / cpu, 1),
                "prefill_tps": round(first["timings"]["prompt_per_second"], 1), "n_prompt": len(toks)}
    finally:
        p.terminate()
        p.wait(30)


def logit_drift(model: Path, types: list[str], n_prompt: int, n_steps: int) -> dict[str, dict]:
    """Teacher-forced logits of every type against f32: max |diff| and argmax agreement."""
    from service.model.model import Model

    ref_model = Model(model, n_ctx=n_prompt + n_steps + 8, n_seq=1, max_batch=256, cache_types=("f32", "f32"))
    toks = ref_model.tokenizer.tokenize(TEXT * 40)[:n_prompt + n_steps]

    def run(m):
        rows = [m.eval(0, toks[:n_prompt])]
        rows += [m.eval(0, [tok]) for tok in toks[n_prompt:n_prompt + n_steps - 1]]
        return np.stack(rows)

    ref = run(ref_model)
    out = {}
    for t in types:
        m = Model(model, n_ctx=n_prompt + n_steps + 8, n_seq=1, max_batch=256, cache_types=(t, t))
        got = run(m)
        out[t] = {"max_abs_logit_diff": round(float(np.abs(got - ref).max()), 3),
                  "argmax_agree": round(float((got.argmax(1) == ref.argmax(1)).mean()), 3),
                  "logit_range": round(float(ref.max() - ref.min()), 1)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="f32,f16,q8_0")
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--peer", type=Path, default=None, help="llama.cpp's llama-server, measured beside")
    ap.add_argument("--tokens", type=int, default=32, help="decode tokens after the prompt")
    ap.add_argument("--fill", type=int, default=3900, help="prompt tokens (of the 4096 context)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-drift", action="store_true")
    a = ap.parse_args()
    types = a.types.split(",")
    results: dict = {}
    for name in a.models.split(","):
        model = MODELS[name]
        for t in types:
            for who, peer in (("llamajit", None), ("llama.cpp", a.peer)):
                if who == "llama.cpp" and peer is None:
                    continue
                row = one_server(model, t, peer, a.tokens, a.fill, a.threads)
                results[f"{name} {t} {who}"] = row
                print(name, t, who, json.dumps(row), flush=True)
        if not a.skip_drift:
            for t, row in logit_drift(model, [t for t in types if t != "f32"], 256, 64).items():
                results[f"{name} {t} drift"] = row
                print(name, t, "vs f32", json.dumps(row), flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
