"""The same charts as `chart.html`, as one PNG (matplotlib, headless): for a ticket, a chat or a README.

Three panels over the run's time axis, every axis labelled with its quantity and unit:
throughput (requests/s, failures/s), latency (ms: mean per second, Locust's ~10 s window percentiles),
users. Input is Locust's `PREFIX_stats_history.csv`, read by `chart.read_history`.
"""

from __future__ import annotations

from pathlib import Path

from loadtests.chart import read_history

PANELS = (  # (title, y-axis label, {legend: column})
    ("Throughput", "requests per second (req/s)", {"req/s": "rps", "failures/s": "fails"}),
    (
        "Latency",
        "response time (ms)",
        {"mean (per s)": "mean", "p50 (~10 s)": "p50", "p95 (~10 s)": "p95", "p99 (~10 s)": "p99"},
    ),
    ("Users", "concurrent users", {"users": "users"}),
)


def render_png(history_csv: Path, out: Path, title: str) -> Path:
    """Write `out` (PNG, 100 dpi, ~10x9 in) and return it."""
    import logging

    import matplotlib

    matplotlib.use("Agg")  # no display: never open a window, never need one
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notice is no part of a report
    from matplotlib import pyplot as plt

    cols = read_history(history_csv)
    figure, axes = plt.subplots(len(PANELS), 1, figsize=(10, 9), sharex=True, constrained_layout=True)
    figure.suptitle(title)
    for ax, (panel, ylabel, series) in zip(axes, PANELS, strict=True):
        for legend, key in series.items():
            points = [
                (t, v) for t, v in zip(cols["t"], cols[key], strict=True) if t is not None and v is not None
            ]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=legend, linewidth=1.2)
        ax.set_title(panel, loc="left")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("time since start (s)")
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
