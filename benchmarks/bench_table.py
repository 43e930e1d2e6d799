"""The performance table: llamajit against llama.cpp, same model files, one run.

    python benchmarks/bench_table.py [--models PATH ...] [--tokens 64] [--rounds 3] [--out docs/perf]

For each model (SmolLM2 135M and Gemma 3 270M by default) and each server (llamajit; llama.cpp
through llama-cpp-python's `llama_cpp.server`, installed on demand into its own venv, see
perf_env; llama.cpp's own llama-server binary where it is built): time to ready and to a
first reply with a cold and a warm Numba cache, prefill tokens/s, decode tokens/s and p50/p95
TTFT at 1, 4 and 8 concurrent streams, peak RSS. Writes <out>/README.md (the tables, the machine
from /proc), <out>/results.json and, with matplotlib, <out>/throughput.png and <out>/ttft.png.
Server logs go to bench-results/perf/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import perf_env  # noqa: E402
from benchmarks.perf_measure import Running, concurrent, prefill, warm_up  # noqa: E402
from benchmarks.perf_report import render  # noqa: E402

MODELS = [ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf", ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"]
SHORT = {"SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2 135M Q4_1", "gemma-3-270m-q4_k_m.gguf": "Gemma 3 270M Q4_K_M"}


def measure(spec: perf_env.ServerSpec, model: Path, a, logs: Path) -> dict:
    """Cold launch (ready, first reply), then a warm launch that is measured under load."""
    tag = f"{model.stem}-{spec.name.split()[0]}"
    env = dict(os.environ)
    numba_dir = None
    if spec.numba and not a.skip_cold:
        numba_dir = tempfile.TemporaryDirectory(prefix="bench-numba-")
        env["NUMBA_CACHE_DIR"] = numba_dir.name  # empty: every kernel compiles on first use
    row = {"model": SHORT.get(model.name, model.name), "server": spec.name, "serial": spec.serial,
           "numba": spec.numba, "conc": []}
    rng = random.Random(f"{model.name}")  # the same prompts for every server
    row["load"] = [perf_env.loadavg()]
    try:
        for phase in ("warm",) if a.skip_cold else ("cold", "warm"):
            print(f"  {spec.name}: {phase} launch", flush=True)
            srv = Running(spec, env, logs / f"{tag}-{phase}.log")
            try:
                row[f"ready_{phase}_s"] = srv.wait_ready(a.ready_timeout)
                row[f"first_{phase}_s"] = srv.first_reply()
                print(f"    ready {row[f'ready_{phase}_s']:.1f} s, first reply {row[f'first_{phase}_s']:.1f} s",
                      flush=True)
                if phase == "warm":
                    warm_up(srv, a.slots, rng)
                    row["prefill"] = prefill(srv, a.prompt_words, a.prefill_reps, rng)
                    print(f"    prefill {row['prefill']['tok_s']:.1f} tok/s "
                          f"({row['prefill']['prompt_tokens']} tokens)", flush=True)
                    for n in a.streams:
                        c = concurrent(srv, n, a.tokens, a.rounds, rng)
                        row["conc"].append(c)
                        print(f"    {n} streams: {c['tok_s']:.1f} tok/s, TTFT p50 {c['ttft_p50']:.0f} ms "
                              f"p95 {c['ttft_p95']:.0f} ms", flush=True)
                    row["rss_mib"] = srv.peak_rss_mib()
            finally:
                srv.stop()
    except Exception as e:  # one server failing leaves the others' rows
        row["error"] = f"{type(e).__name__}: {e}"
        print(f"    FAILED: {row['error']}", flush=True)
    finally:
        row["load"].append(perf_env.loadavg())
        if numba_dir is not None:
            numba_dir.cleanup()
    return row


def plots(out: Path, peer: dict) -> tuple[list[str], str | None]:
    if not peer.get("matplotlib"):
        return [], "no plots: matplotlib could not be installed into the benchmark venv"
    r = subprocess.run([str(perf_env.venv_python()), str(ROOT / "benchmarks" / "perf_plots.py"),
                        str(out / "results.json"), str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        return [], f"no plots: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    return r.stdout.split(), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", type=Path, default=MODELS)
    ap.add_argument("--tokens", type=int, default=64, help="tokens generated per stream")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of simultaneous streams per concurrency")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--prompt-words", type=int, default=400, help="prefill prompt length in words")
    ap.add_argument("--prefill-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--ready-timeout", type=float, default=900)
    ap.add_argument("--install-timeout", type=float, default=2400, help="seconds for pip to build llama-cpp-python")
    ap.add_argument("--no-install", action="store_true", help="use the benchmark venv as it is")
    ap.add_argument("--skip-cold", action="store_true", help="no cold launch (quick runs)")
    ap.add_argument("--servers", nargs="*", help="only servers whose name starts with one of these")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    ap.add_argument("--render-only", action="store_true", help="redo README.md and the PNGs from results.json")
    a = ap.parse_args()
    if a.render_only:
        res = json.loads((a.out / "results.json").read_text())
        names, why = plots(a.out, perf_env.ensure_venv(a.install_timeout, install=False))
        (a.out / "README.md").write_text(render(res, names))
        print(why or "", (a.out / "README.md").read_text(), sep="\n")
        return

    a.out.mkdir(parents=True, exist_ok=True)
    logs = ROOT / "bench-results" / "perf"
    logs.mkdir(parents=True, exist_ok=True)
    peer = perf_env.ensure_venv(a.install_timeout, install=not a.no_install)
    notes = []
    if not peer["llama_cpp"]:
        notes.append(f"llama-cpp-python is missing ({peer['note']}): "
                     + ("llama.cpp is measured through its own llama-server binary only." if perf_env.LLAMA_SERVER.exists()
                        else "llama.cpp is not in this table."))
    res = {"machine": perf_env.machine(), "peer": peer, "notes": notes,
           "settings": {k: getattr(a, k) for k in ("tokens", "rounds", "streams", "prompt_words", "prefill_reps",
                                                   "threads", "ctx", "slots")},
           "runs": []}
    t0 = time.monotonic()
    for model in a.models:
        print(f"{model.name}", flush=True)
        for spec in perf_env.specs(model, a.threads, a.ctx, a.slots, peer, perf_env.eog_token_ids(model)):
            if a.servers and not any(spec.name.startswith(s) for s in a.servers):
                continue
            row = measure(spec, model, a, logs)
            if "error" in row:
                notes.append(f"{row['server']} on {row['model']} failed: {row['error']}")
            if row["conc"]:
                res["runs"].append(row)
            (a.out / "results.json").write_text(json.dumps(res, indent=1))  # progress survives a crash
    res["settings"]["wall_s"] = round(time.monotonic() - t0)
    (a.out / "results.json").write_text(json.dumps(res, indent=1))
    names, why = plots(a.out, peer)
    if why:
        notes.append(why)
    (a.out / "README.md").write_text(render(res, names))
    print((a.out / "README.md").read_text())


if __name__ == "__main__":
    main()
