"""PNG plots of the performance table: decode throughput and TTFT against concurrent streams.

    <bench venv>/bin/python benchmarks/perf_plots.py docs/perf/results.json docs/perf

Runs in the benchmark's own venv (matplotlib is no dependency of llamajit); prints the
names of the files it wrote, one a line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

STYLE = {"llamajit": "-o"}


def plot(res: dict, out: Path) -> list[str]:
    models = list(dict.fromkeys(r["model"] for r in res["runs"]))
    m = res["machine"]
    caption = f"{m['cpu']}, {m['cores']} cores, {m['memory']}"
    written = []
    for key, ylabel, fname, title in (
        ("tok_s", "generated tokens/s (all streams)", "throughput.png", "Decode throughput"),
        ("ttft_p50", "TTFT ms (line p50, band to p95; log scale)", "ttft.png", "Time to first token"),
    ):
        fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
        for ax, model in zip(axes[0], models):
            for r in (r for r in res["runs"] if r["model"] == model):
                xs = [c["streams"] for c in r["conc"]]
                ys = [c[key] for c in r["conc"]]
                line = ax.plot(xs, ys, STYLE.get(r["server"], "--s"), label=r["server"])[0]
                if key == "ttft_p50":
                    p95 = [c["ttft_p95"] for c in r["conc"]]
                    ax.fill_between(xs, ys, p95, color=line.get_color(), alpha=0.15)
            ax.set_title(model, fontsize=10)
            ax.set_xlabel("concurrent streams")
            ax.set_ylabel(ylabel)
            ax.set_xticks(sorted({c["streams"] for r in res["runs"] for c in r["conc"]}))
            if key == "ttft_p50":
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{title} ({caption})" , fontsize=10)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        written.append(fname)
    return written


if __name__ == "__main__":
    res = json.loads(Path(sys.argv[1]).read_text())
    for name in plot(res, Path(sys.argv[2])):
        print(name)
