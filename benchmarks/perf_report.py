"""The performance table as Markdown, from bench_table's results (docs/perf/results.json).

results = {"machine": {...}, "settings": {...}, "peer": {...}, "notes": [...],
           "runs": [{"model", "server", "serial", "numba", "ready_cold_s", "first_cold_s",
                     "ready_warm_s", "first_warm_s", "prefill": {"tok_s", "prompt_tokens"},
                     "conc": [{"streams", "tok_s", "ttft_p50", "ttft_p95", ...}], "rss_mib"}]}
"""

from __future__ import annotations


def _f(v, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _conc(run: dict, streams: int) -> dict:
    return next((c for c in run["conc"] if c["streams"] == streams), {})


def render(res: dict, plots: list[str]) -> str:
    m, s = res["machine"], res["settings"]
    out = [
        "# Performance: llamajit against llama.cpp",
        "",
        f"Taken {m['date']} on {m['cpu']}, {m['cores']} cores ({m['isa']}), {m['memory']} memory, "
        f"Linux {m['kernel']}, Python {m['python']}; llamajit at commit {m['commit']}. "
        f"The cores are shared with other work (load average {m['load_at_start']} at the start), "
        "so figures move between runs: compare the servers within one table, not across tables.",
        "",
        f"Every server gets the same model file, {s['threads']} threads and a {s['ctx']}-token context "
        f"(llamajit and llama-server split it over {s['slots']} slots, -np {s['slots']}); requests go to "
        "POST /v1/completions, greedy. Prefill: a prompt of about "
        f"{s['prompt_words']} random words and one generated token, median of {s['prefill_reps']}. "
        f"Decode: {s['rounds']} rounds of N simultaneous streams of {s['tokens']} tokens each "
        "(16-word prompts, generation held to its length), total generated tokens over the rounds' wall time. "
        "TTFT: time to the first streamed token of those requests. Peak RSS: VmHWM of the server's processes "
        "after the whole run. Time to ready: launch until the server answers its health route; first reply: "
        "launch until a first 4-token completion has come back. Cold: llamajit with an empty NUMBA_CACHE_DIR "
        "(every kernel compiles on first use); warm: the same directory, filled. llama.cpp needs no JIT: its "
        "cold and warm columns are simply its first and second launch (the model file is in the OS page "
        "cache for both).",
        "",
        "| model | server | prefill tok/s | decode tok/s, 1 / 4 / 8 streams | TTFT p50 / p95 ms, 8 streams "
        "| peak RSS MiB | ready s, cold / warm | first reply s, cold / warm |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in res["runs"]:
        c8 = _conc(r, 8)
        dec = " / ".join(_f(_conc(r, n).get("tok_s")) for n in (1, 4, 8))
        name = r["server"] + (" ¹" if r.get("serial") else "")
        pre = r.get("prefill") or {}
        out.append(f"| {r['model']} | {name} | {_f(pre.get('tok_s'))} | {dec} | "
                   f"{_f(c8.get('ttft_p50'), 0)} / {_f(c8.get('ttft_p95'), 0)} | {_f(r.get('rss_mib'), 0)} | "
                   f"{_f(r.get('ready_cold_s'))} / {_f(r.get('ready_warm_s'))} | "
                   f"{_f(r.get('first_cold_s'))} / {_f(r.get('first_warm_s'))} |")
    out += ["", "TTFT and throughput against the number of simultaneous streams:", "",
            "| model | server | streams | decode tok/s | TTFT p50 ms | TTFT p95 ms | requests |",
            "|---|---|--:|--:|--:|--:|--:|"]
    for r in res["runs"]:
        for c in r["conc"]:
            out.append(f"| {r['model']} | {r['server']} | {c['streams']} | {_f(c['tok_s'])} | "
                       f"{_f(c['ttft_p50'], 0)} | {_f(c['ttft_p95'], 0)} | {len(c['ttft_ms'])} |")
    notes = list(res.get("notes", []))
    loads = [x for r in res["runs"] for x in r.get("load", [])]
    if loads:
        notes.insert(0, f"1-minute load average of the {m['cores']} cores, sampled before and after each server's "
                        f"measurements: {min(loads):.1f} to {max(loads):.1f} (other work shared the machine).")
    if any(r.get("serial") for r in res["runs"]):
        notes.insert(0, "¹ llama_cpp.server runs one request at a time (one Llama object behind a lock): "
                        "simultaneous streams queue, so its TTFT grows with them and its throughput does not.")
    if notes:
        out += ["", *[f"- {n}" for n in notes]]
    if plots:
        out += ["", *[f"![{p.removesuffix('.png')}]({p})" for p in plots]]
    return "\n".join(out) + "\n"
