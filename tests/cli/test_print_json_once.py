"""Session 22 (coldsearch22): `print_json` encodes the whole document, then writes it once; its text is json.dump's
with indent 2 (the text every subcommand's --json printed before), NaN / inf as null, numpy scalars as numbers."""

import io
import json
import math
from contextlib import redirect_stdout

import numpy as np

from moesim.cli.output import _clean, print_json


def _dumped(data) -> str:
    """What print_json printed before session 22: json.dump to the stream, then a newline."""
    out = io.StringIO()
    json.dump(_clean(data), out, indent=2)
    out.write("\n")
    return out.getvalue()


def test_print_json_prints_json_dumps_text_once():
    data = {"scenario": "deepseek-v3-h800", "devices": np.int64(2048), "step_time_s": np.float64(16.6031),
            "nan": math.nan, "inf": -math.inf, "nested": [{"a": (1, 2.5, None), "b": []}, {}],
            "unicode": "s\u00b2 \u2192 x", "empty": {}, "bools": [True, False], 3: "int key"}
    printed = io.StringIO()
    with redirect_stdout(printed):
        print_json(data)
    assert printed.getvalue() == _dumped(data)
    assert json.loads(printed.getvalue())["nan"] is None and printed.getvalue().endswith("}\n")


class _Counting(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, s):
        self.writes += 1
        return super().write(s)


def test_print_json_writes_the_stream_once():
    stream = _Counting()
    with redirect_stdout(stream):
        print_json({"results": [{"rank": i, "layout": {"dp": i, "tp": 2}} for i in range(50)]})
    assert stream.writes == 1
