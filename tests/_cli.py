"""The CLI in process for the bad-input tests (tests/test_bad_input.py, tests/cli/test_calibrate_user_errors.py): one
helper, where each file had its own copy. Imported as `from _cli import run_bad` (tests/ is on sys.path: its
conftest.py puts it there, as calibrate_synth is for tests/calibrate)."""

from __future__ import annotations

import time

from moesim.cli import main


def run_bad(capsys, argv, *fragments, timeout_s: float | None = None) -> str:
    """Run `moesim ARGV`; assert exit 2, one stderr line starting `moesim: error:` that holds every fragment, and,
    with `timeout_s`, that it returned within it (a bound against a hang, not a speed check). Returns the line."""
    start = time.perf_counter()
    code = main([str(a) for a in argv])
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 2, (out[-500:], err[-500:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moesim: error:"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    if timeout_s is not None:
        assert elapsed < timeout_s, elapsed
    return lines[0]
