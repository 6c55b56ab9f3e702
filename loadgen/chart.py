#!/usr/bin/env python3
"""Draws one SVG chart per loadgen scenario from loadgen's JSON results.

    python3 loadgen/chart.py [--out docs/benchmarks] RESULT.json ...

Each file is one run (`loadgen ... --json FILE`). Runs are grouped by their `scenario` field
(fanout, pairs, idle, im, group, floor) and each group becomes `<out>/<scenario>.svg`: a row of
panels, each a bar chart of one figure (throughput, latency percentiles, CPU per delivery,
memory per session), one group of bars per run, labelled with the run's `--label` (or the
file's name). Runs are drawn in the order given on the command line.

Python 3 standard library only: the SVG is written by hand, so that the charts can be redrawn
on any machine that ran loadgen, with nothing to install.
"""

import argparse
import html
import json
import os
import sys

# Bar colours, one per series of a panel (colour-blind safe, Okabe-Ito).
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"]

PANEL_WIDTH = 300
PANEL_HEIGHT = 220
TOP = 48  # title and legend
BOTTOM = 64  # run labels
LEFT = 56  # value axis
GAP = 24


def get(run, path):
    """The number at a dotted path of a run, or None."""
    value = run
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def kib(run, path):
    value = get(run, path)
    return None if value is None else value / 1024.0


def latency_series(prefix="latency"):
    return [
        ("p50", lambda r: get(r, prefix + ".p50_ms")),
        ("p99", lambda r: get(r, prefix + ".p99_ms")),
        ("p99.9", lambda r: get(r, prefix + ".p999_ms")),
    ]


BROKER_CPU = (
    "broker CPU per delivery (µs)",
    [("broker", lambda r: get(r, "broker_cpu_us_per_delivery"))],
)

# Per scenario: panels of (title, [(series name, value of a run)]).
PANELS = {
    "fanout": [
        ("copies delivered per second", [("deliveries/s", lambda r: get(r, "deliveries_per_sec"))]),
        ("end-to-end latency (ms)", latency_series()),
        BROKER_CPU,
    ],
    "pairs": [
        ("messages delivered per second", [("messages/s", lambda r: get(r, "deliveries_per_sec"))]),
        ("end-to-end latency (ms)", latency_series()),
        BROKER_CPU,
    ],
    "im": [
        (
            "messages per second",
            [
                ("stored (RECEIPTs)/s", lambda r: get(r, "receipts_per_sec")),
                ("delivered/s", lambda r: get(r, "deliveries_per_sec")),
            ],
        ),
        ("send to delivery latency (ms)", latency_series()),
        BROKER_CPU,
    ],
    "group": [
        ("copies delivered per second", [("deliveries/s", lambda r: get(r, "deliveries_per_sec"))]),
        (
            "latency (ms)",
            [
                ("p50", lambda r: get(r, "latency.p50_ms")),
                ("p99", lambda r: get(r, "latency.p99_ms")),
                ("last member p50", lambda r: get(r, "all_members_latency.p50_ms")),
                ("last member p99", lambda r: get(r, "all_members_latency.p99_ms")),
            ],
        ),
        BROKER_CPU,
    ],
    "idle": [
        (
            "broker memory per session (KiB)",
            [("RSS / session", lambda r: kib(r, "rss_bytes_per_connection"))],
        ),
        (
            "sessions",
            [
                ("opened", lambda r: get(r, "connected")),
                ("alive after hold", lambda r: get(r, "alive_after_hold")),
            ],
        ),
    ],
    "floor": [
        ("latency (ms)", latency_series()),
        (
            "CPU per delivery (µs)",
            [
                ("write", lambda r: get(r, "write_us_per_delivery")),
                ("read", lambda r: get(r, "read_us_per_delivery")),
            ],
        ),
    ],
}


def short(value):
    """A bar's value as printed above it."""
    if value == 0:
        return "0"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def nice_max(value):
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten)
    at or above `value`, so that the tallest bar fills most of its panel."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def text(x, y, content, size=11, anchor="middle", weight="normal", rotate=None):
    transform = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-weight="{weight}"{transform}>{html.escape(str(content))}</text>'
    )


def panel_width(series, runs):
    """Wide enough for a readable value above every bar."""
    return max(PANEL_WIDTH, LEFT + 16 + len(runs) * (len(series) * 30 + 12))


def panel(x0, title, series, runs):
    """The SVG elements of one panel whose left edge is at x0."""
    width = panel_width(series, runs)
    out = [text(x0 + width / 2, 18, title, size=13, weight="bold")]
    # Legend: one swatch per series.
    lx = x0 + LEFT
    for index, (name, _) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        out.append(f'<rect x="{lx:.1f}" y="28" width="10" height="10" fill="{colour}"/>')
        out.append(text(lx + 14, 37, name, size=10, anchor="start"))
        lx += 22 + 6.5 * len(name)
    values = [[fn(run) for _, fn in series] for _, run in runs]
    top = nice_max(max([v for row in values for v in row if v is not None] or [0]))
    plot_w = width - LEFT - 8
    plot_h = PANEL_HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    # Value axis: 0, half and top, with light grid lines.
    for fraction in (0, 0.5, 1):
        y = base - fraction * plot_h
        out.append(
            f'<line x1="{x0 + LEFT:.1f}" y1="{y:.1f}" x2="{x0 + LEFT + plot_w:.1f}" '
            f'y2="{y:.1f}" stroke="#ddd"/>'
        )
        out.append(text(x0 + LEFT - 4, y + 4, short(top * fraction), size=10, anchor="end"))
    group_w = plot_w / max(len(runs), 1)
    bar_w = min(32.0, (group_w - 8) / max(len(series), 1))
    for run_index, (label, _) in enumerate(runs):
        gx = x0 + LEFT + run_index * group_w
        first = gx + (group_w - bar_w * len(series)) / 2
        for s_index, value in enumerate(values[run_index]):
            bx = first + s_index * bar_w
            if value is None:
                out.append(text(bx + bar_w / 2, base - 4, "–", size=10))
                continue
            h = plot_h * value / top
            colour = COLOURS[s_index % len(COLOURS)]
            out.append(
                f'<rect x="{bx:.1f}" y="{base - h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{html.escape(label)}: '
                f"{value:.3f}</title></rect>"
            )
            out.append(text(bx + bar_w / 2 - 1, base - h - 3, short(value), size=9))
        out.append(
            text(gx + group_w / 2, base + 14, label, size=10, anchor="end", rotate=-25)
        )
    out.append(
        f'<line x1="{x0 + LEFT:.1f}" y1="{base:.1f}" x2="{x0 + LEFT + plot_w:.1f}" '
        f'y2="{base:.1f}" stroke="#333"/>'
    )
    return out


def chart(scenario, runs):
    """The whole SVG of one scenario."""
    panels = [
        (title, series)
        for title, series in PANELS[scenario]
        if any(fn(run) is not None for _, run in runs for _, fn in series)
    ]
    height = PANEL_HEIGHT + 24
    body = []
    x = 8
    for title, series in panels:
        body.extend(panel(x, title, series, runs))
        x += panel_width(series, runs) + GAP
    width = x - GAP + 8
    caption = f"loadgen {scenario}: {len(runs)} run(s)"
    machine = runs[0][1].get("machine") or {}
    if machine.get("cores"):
        caption += f"; {machine['cores']} cores, {machine.get('cpu_model') or 'unknown CPU'}"
    body.append(text(8, height - 6, caption, size=10, anchor="start"))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="loadgen JSON files")
    parser.add_argument("--out", default="docs/benchmarks", help="directory for the SVGs")
    args = parser.parse_args()
    by_scenario = {}
    for path in args.results:
        try:
            with open(path, encoding="utf-8") as file:
                run = json.load(file)
        except (OSError, ValueError) as error:
            # A run that failed leaves no file (or half a one); chart the others.
            print(f"{path}: {error}, skipped", file=sys.stderr)
            continue
        scenario = run.get("scenario")
        if scenario not in PANELS:
            print(f"{path}: unknown scenario {scenario!r}, skipped", file=sys.stderr)
            continue
        label = run.get("label") or os.path.splitext(os.path.basename(path))[0]
        by_scenario.setdefault(scenario, []).append((label, run))
    os.makedirs(args.out, exist_ok=True)
    for scenario, runs in by_scenario.items():
        path = os.path.join(args.out, f"{scenario}.svg")
        with open(path, "w", encoding="utf-8") as file:
            file.write(chart(scenario, runs))
        print(path)
    return 0 if by_scenario else 1


if __name__ == "__main__":
    sys.exit(main())
