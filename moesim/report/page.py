"""One self-contained HTML page: plotly.js inlined once (include_plotlyjs=True), inline CSS, no
external script, stylesheet or font, so the report opens offline."""

from __future__ import annotations

import html

import plotly.graph_objects as go
import plotly.io as pio

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.summary { border-collapse: collapse; margin: 12px 0; }
table.summary td, table.summary th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
table.summary th { background: #f4f4f4; }
ul.notes li { margin: 2px 0; }
.figure { margin: 18px 0 28px 0; }
.muted { color: #666; }
"""


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def _grid(title: str, headers: list[str], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<h2>{html.escape(title)}</h2><table class="summary ranked"><tr>{head}</tr>{body}</table>'


def render_page(title: str, subtitle: str, summary: list[tuple[str, str]], figures: list[tuple[str, go.Figure]],
                notes: list[str], tables: list[tuple[str, list[str], list[tuple[str, ...]]]] = ()) -> str:
    """The page: heading, summary table, each (title, headers, rows) of `tables`, notes, then each (key, figure)
    in its own section."""
    parts = []
    for i, (key, fig) in enumerate(figures):
        div = pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), include_mathjax=False,
                          div_id=f"figure-{key}", config=PLOT_CONFIG, default_height="480px")
        parts.append(f'<section class="figure" data-figure="{html.escape(key)}">{div}</section>')
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{html.escape(subtitle)}</p>',
        _table(summary),
        *(_grid(*t) for t in tables),
        "<h2>Notes</h2>",
        f'<ul class="notes">{note_items}</ul>',
        "<h2>Figures</h2>",
        *parts,
        "</body></html>",
    ]) + "\n"
