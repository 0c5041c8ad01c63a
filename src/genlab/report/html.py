"""A self-contained HTML report (images embedded as base64) for ``genlab compare``."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..io import atomic_write_text
from .plots import intrinsic_dimension_plot, metric_bars


def _img(data: bytes, alt: str, width: str = "") -> str:
    style = f' style="width:{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{style} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _file_img(path: Path, alt: str) -> str:
    return _img(path.read_bytes(), alt) if path.is_file() else f"<p><em>{html.escape(alt)}: not available</em></p>"


def _markdown_table_to_html(markdown: str) -> str:
    out, in_table = [], False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
        else:
            if in_table:
                out.append("</table>")
                in_table = False
            if line.strip():
                out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def write_report(out_dir: Path, summary: dict, table_markdown: str, real_row: str) -> Path:
    """``report.html`` in ``out_dir`` for a compare ``summary``: ``table_markdown`` is the results
    table and ``real_row`` the name of the real-data row (both from :mod:`genlab.compare`,
    passed in so that the report layer does not import the workflow above it)."""
    out_dir = Path(out_dir)
    cells = out_dir / "cells"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>genlab compare</title>",
        "<style>body{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "th{background:#f0f0f0}td:first-child{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:18px}"
        ".grid figure{margin:0}figcaption{font-size:13px;text-align:center}img{image-rendering:pixelated}</style></head><body>",
        f"<h1>genlab compare: {html.escape(', '.join(summary['models']))} on {html.escape(summary['data'])}</h1>",
        _markdown_table_to_html(table_markdown),
        "<p>Each model was trained on the training part of every fold and evaluated on that fold's held-out images it never saw. "
        "FD, precision/recall and density/coverage use the evaluator's features; <em>copies</em> is the share of samples closer "
        "(pixel L2) to a training image than 95% of held-out real images are — 0.05 is what unseen real data scores.</p>",
        "<h2>Samples (fold 1)</h2><div class='grid'>",
        f"<figure>{_file_img(cells / '_real' / 'fold0_samples.png', 'real held-out images')}<figcaption>real held-out images</figcaption></figure>",
    ]
    for name in summary["models"]:
        parts.append(
            f"<figure>{_file_img(cells / name / 'fold0_samples.png', name)}<figcaption>{html.escape(name)}</figcaption></figure>"
        )
    parts.append(
        "</div><h2>Memorisation: the samples closest to the training set (top) and their nearest training images (bottom)</h2><div class='grid'>"
    )
    for name in summary["models"]:
        parts.append(
            f"<figure>{_file_img(cells / name / 'fold0_memorization.png', name + ' memorisation')}<figcaption>{html.escape(name)}</figcaption></figure>"
        )
    parts.append("</div><h2>Metrics (mean ± std over folds; dashed: real data and its spread)</h2>")
    parts.append(_img(metric_bars(summary["rows"], real_row), "metric plots", "100%"))
    if summary.get("intrinsic_dimension"):
        parts.append("<h2>Intrinsic dimension</h2>")
        parts.append(
            _img(
                intrinsic_dimension_plot(summary["rows"], summary["intrinsic_dimension"], real_row),
                "intrinsic dimension",
                "80%",
            )
        )
    errors = [(n, e) for n, r in summary["rows"].items() for e in r["errors"]]
    if errors:
        parts.append(
            "<h2>Failures</h2><ul>"
            + "".join(f"<li>{html.escape(n)}: {html.escape(e)}</li>" for n, e in errors)
            + "</ul>"
        )
    parts.append(
        f"<p style='color:#777;font-size:12px'>wall time {summary.get('wall_seconds', '?')} s</p></body></html>"
    )
    return atomic_write_text(out_dir / "report.html", "\n".join(parts))
