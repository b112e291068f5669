"""A self-contained HTML chart (inline SVG, no scripts, no CDN) of throughput and latency over time.

Input: Locust's `PREFIX_stats_history.csv` (`--csv PREFIX --csv-full-history`), the `Aggregated` rows:
one row per second with users, current req/s, failures/s and the current latency percentiles.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

WIDTH, HEIGHT, PAD, LEGEND = 860, 220, 48, 110
SERIES_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_history(path: Path) -> dict[str, list[float | None]]:
    """Aggregated history as columns: t (s since start), users, rps, fails, mean, p50, p95, p99.

    `rps` and `mean` are per interval, derived from the cumulative totals (exact from the first
    second); the percentiles are Locust's sliding ~10 s window, so they start after ~10 s (0 before).
    """
    keys = ("t", "users", "rps", "fails", "mean", "p50", "p95", "p99")
    cols: dict[str, list[float | None]] = {k: [] for k in keys}
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    if not rows:
        return cols
    t0 = float(rows[0]["Timestamp"])
    prev = (t0, 0.0, 0.0, 0.0)  # time, requests, failures, total response time (ms)
    for r in rows:
        now = float(r["Timestamp"])
        count = _number(r["Total Request Count"]) or 0.0
        fails = _number(r["Total Failure Count"]) or 0.0
        spent = count * (_number(r["Total Average Response Time"]) or 0.0)
        dt, dn = now - prev[0], count - prev[1]
        cols["t"].append(now - t0)
        cols["users"].append(_number(r["User Count"]))
        cols["rps"].append(dn / dt if dt > 0 else None)
        cols["fails"].append((fails - prev[2]) / dt if dt > 0 else None)
        cols["mean"].append((spent - prev[3]) / dn if dn > 0 else None)
        for key, column in (("p50", "50%"), ("p95", "95%"), ("p99", "99%")):
            value = _number(r.get(column, ""))
            cols[key].append(value if value else None)
        if dt > 0:
            prev = (now, count, fails, spent)
    return cols


def _svg(title: str, t: list[float | None], series: dict[str, list[float | None]], unit: str) -> str:
    values = [v for s in series.values() for v in s if v is not None]
    top = max(values, default=1.0) * 1.1 or 1.0
    right = max((x for x in t if x is not None), default=1.0) or 1.0
    plot_w, plot_h = WIDTH - PAD - LEGEND, HEIGHT - 2 * PAD

    def xy(x: float, y: float) -> str:
        return f"{PAD + plot_w * x / right:.1f},{HEIGHT - PAD - plot_h * y / top:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">',
        f'<text x="{PAD}" y="20" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{PAD + plot_w}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<text x="{PAD}" y="{PAD - 6}" font-size="11">{html.escape(unit)}</text>',
        f'<text x="{PAD + plot_w / 2 - 50}" y="{HEIGHT - PAD + 30}" font-size="11">time since start (s)</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):  # tick labels on both axes: zero, half, top
        y = HEIGHT - PAD - plot_h * fraction
        parts.append(
            f'<text x="{PAD - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{top * fraction:.3g}</text>'
        )
        x = PAD + plot_w * fraction
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="middle">'
            f"{right * fraction:.3g}</text>"
        )
    for i, (name, ys) in enumerate(series.items()):
        points = " ".join(xy(x, y) for x, y in zip(t, ys, strict=True) if x is not None and y is not None)
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        parts.append(
            f'<text x="{PAD + plot_w + 8}" y="{PAD + 14 * i}" font-size="11" fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def render(history_csv: Path, out: Path, title: str) -> Path:
    cols = read_history(history_csv)
    t = cols["t"]
    body = "\n".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            _svg("Throughput", t, {"req/s": cols["rps"], "failures/s": cols["fails"]}, "req/s"),
            _svg(
                "Latency (mean per second; percentiles over Locust's last ~10 s)",
                t,
                {"mean": cols["mean"], "p50": cols["p50"], "p95": cols["p95"], "p99": cols["p99"]},
                "ms",
            ),
            _svg("Users", t, {"users": cols["users"]}, "users"),
        ]
    )
    out.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif'>{body}</body></html>\n"
    )
    return out
