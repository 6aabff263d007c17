"""Plain-text tables and JSON printing shared by the subcommands."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence


def print_json(data: Any) -> None:
    """Stable JSON: sorted keys off (the documented order is kept), NaN/inf as null. Encoded whole, then written
    once: json.dump's text (the same encoder with indent) without one stream write per token (session 22)."""
    sys.stdout.write(json.dumps(_clean(data), indent=2) + "\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], align: str | None = None) -> str:
    """A text table; `align` is one of l/r per column (numbers right by default)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def kv_block(title: str, items: Sequence[tuple[str, Any]]) -> str:
    """A titled block of `name: value` lines."""
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join([title] + [f"  {k.ljust(width)}  {v}" for k, v in items])
