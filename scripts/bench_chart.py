#!/usr/bin/env python3
"""Draws a benchmark JSON (scripts/bench.sh --json FILE) as an SVG chart:
sparse push/pull throughput per request size and dim, fp32 and fp16.
Standard library only.

  scripts/bench_chart.py bench.json chart.svg
"""

import json
import sys
from xml.sax.saxutils import escape

SIZES = ["1000", "10000", "100000", "1000000"]
SERIES = [(op, dim, dtype) for dim in ("8", "16", "64") for op in ("push", "pull") for dtype in ("", "_fp16")]
COLORS = {"8": "#1f77b4", "16": "#2ca02c", "64": "#d62728"}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    records = {r["name"]: r["value"] for r in json.load(open(sys.argv[1]))}
    width, height, left, top, bottom = 980, 420, 60, 40, 70
    plot_w, plot_h = width - left - 200, height - top - bottom
    series = [s for s in SERIES if any(f"sparse_dim{s[1]}_keys{n}_{s[0]}{s[2]}" in records for n in SIZES)]
    peak = max([records.get(f"sparse_dim{d}_keys{n}_{o}{t}", 0) for o, d, t in series for n in SIZES] + [1])
    group_w = plot_w / len(SIZES)
    bar_w = group_w * 0.85 / max(1, len(series))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15">Sparta sparse push/pull, 1 server, loopback, Adagrad (M keys/s)</text>']
    memcpy = records.get("memcpy_bandwidth")
    if memcpy:
        out.append(f'<text x="{left}" y="{height - 12}" fill="#555">memcpy bandwidth in the same run: {memcpy:.1f} GB/s</text>')
    for i in range(5):  # grid
        v = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    for g, n in enumerate(SIZES):
        x0 = left + g * group_w + group_w * 0.075
        for k, (op, dim, dtype) in enumerate(series):
            v = records.get(f"sparse_dim{dim}_keys{n}_{op}{dtype}")
            if v is None:
                continue
            h = plot_h * v / peak
            x = x0 + k * bar_w
            opacity = "1" if op == "push" else "0.55"
            stroke = ' stroke="black" stroke-dasharray="2,1"' if dtype else ""
            out.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                       f'fill="{COLORS[dim]}" fill-opacity="{opacity}"{stroke}><title>{escape(f"dim {dim} {op}{dtype}: {v:.2f}")}</title></rect>')
        out.append(f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                   f'{int(n):,} keys/request</text>')
    for k, (op, dim, dtype) in enumerate(series):  # legend
        y = top + 14 * k
        opacity = "1" if op == "push" else "0.55"
        stroke = ' stroke="black"' if dtype else ""
        out.append(f'<rect x="{left + plot_w + 20}" y="{y}" width="12" height="10" fill="{COLORS[dim]}" '
                   f'fill-opacity="{opacity}"{stroke}/>')
        out.append(f'<text x="{left + plot_w + 38}" y="{y + 9}">dim {dim} {op}{" fp16" if dtype else ""}</text>')
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
