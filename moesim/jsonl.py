"""Reading JSONL results files (validate/ harness records) line by line, robust to crashes.

Every reader of a results file — the harness resuming a sweep, `moesim calibrate`,
`moesim validate-report`, `moesim report --results` — goes through `read_jsonl_objects`: a line cut
short by a crash mid-write, a corrupt line, a line that is not UTF-8 or not a JSON object is
skipped with a warning naming the file and the line, and the other lines are read. The harness
keeps a copy of `parse_jsonl_bytes` (`validate/records.py: parse_jsonl_lines`) so that its ranks
need not import moesim; tests/validate/test_harness.py keeps the two in step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class JsonlLines:
    """The JSON objects of a file with their 1-based line numbers, and one warning per skipped line."""

    objects: tuple[tuple[int, dict], ...] = ()
    warnings: tuple[str, ...] = field(default=())


def parse_jsonl_bytes(data: bytes, source: str) -> JsonlLines:
    """Parse `data` line by line; `source` names the file in warnings (`FILE:LINE: skipped ...`)."""
    objects, warnings = [], []
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # a UTF-8 byte-order mark (Windows editors)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        cut = number == len(lines)  # no newline after it: the last write did not finish
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            warnings.append(f"{source}:{number}: skipped a line that is not UTF-8 (byte {err.start})")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            why = "cut short (a write did not finish)" if cut else f"not valid JSON ({err.msg} at column {err.colno})"
            warnings.append(f"{source}:{number}: skipped a line {why}")
            continue
        except RecursionError:
            warnings.append(f"{source}:{number}: skipped a line nested too deeply")
            continue
        if not isinstance(obj, dict):
            warnings.append(f"{source}:{number}: skipped a line that is not a JSON object")
            continue
        objects.append((number, obj))
    return JsonlLines(tuple(objects), tuple(warnings))


def read_jsonl_objects(path: str | Path) -> JsonlLines:
    """`parse_jsonl_bytes` of the file at `path`; an unreadable file (not a line) is a SpecError."""
    from moesim.paths import read_bytes_file

    return parse_jsonl_bytes(read_bytes_file(path, field="results"), str(path))


class SkippedLineWarning(UserWarning):
    """A line of a results file was skipped (cut short, corrupt, not UTF-8, a repeated key)."""


def warn_skipped(messages) -> None:
    """Issue one SkippedLineWarning per message (the CLI prints each as one `moesim: warning:` line)."""
    import warnings

    for message in messages:
        warnings.warn(message, SkippedLineWarning, stacklevel=3)
