"""review23b (session 23): a second reading of session 23's later merges (uxfix's count hint, bwtables'
`efficiency.op_tables_from`, walkspeed's `distinct_rows`). Each test but the last failed on main at ac43563."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moesim.calibrate.ops import calibrate_ops
from moesim.cli import main
from moesim.errors import SpecError
from moesim.estimate.a2a_order import distinct_rows
from moesim.paths import builtin_dir
from moesim.specs.count_hint import integer_hint, meant_integer
from moesim.specs.hardware_file import lender_for_copy
from moesim.specs.load import load_hardware
from tests.cli.test_newuser5_walk import error_of  # one line, exit 2, no traceback

ROOT = Path(__file__).resolve().parent.parent.parent
PROFILES = builtin_dir("hardware_profiles")
LOG = ROOT / "tests" / "data" / "nccl" / "b200-aicr-1node_all_reduce_perf.log"


# --- (1) the count hint: "32i" ended in a KeyError traceback; a long count was rounded through a float.

def test_an_i_without_a_suffix_is_no_count(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text((ROOT / "scenarios" / "mixtral-8x7b-h100.toml").read_text().replace(
        "seq_len = 4096", 'seq_len = "32i"'))
    assert error_of(capsys, ["estimate", path]).rstrip().endswith("expected integer, got '32i'")
    err = error_of(capsys, ["sweep", "mixtral-8x7b-h100", "--vary", "training.seq_len=32i"])
    assert "'32i' is not an integer" in err and "did you mean" not in err


def test_a_long_count_is_meant_exactly_and_an_endless_one_not_at_all():
    assert meant_integer("9" * 20 + "G") == int("9" * 20) * 2**30
    assert meant_integer("1.25Ki") == 1280 and integer_hint("seq_len", "1.25Ki").endswith("(an integer, no quotes; "
                                                                                           "K = 1,024)?")
    assert meant_integer("1" * 5000) is None and integer_hint("seq_len", "1" * 5000) == ""
    assert meant_integer("-32K") is None  # a negative count is no count: refused as text, no hint


# --- (2) op_tables_from: a profile naming itself recursed without end; a calibrated copy of a profile that
# borrows by a relative path named a file that is not beside the copy, so `moesim calibrate` failed on reloading.

def _borrower(folder: Path, name: str, lender: str) -> Path:
    text = (PROFILES / "gb200-nvl72.toml").read_text(encoding="utf-8")
    path = folder / f"{name}.toml"
    path.write_text(text.replace('op_tables_from = "b200"\n', f'op_tables_from = "{lender}"\n'), encoding="utf-8")
    return path


def test_a_profile_that_borrows_itself_or_a_cycle_is_named(tmp_path):
    with pytest.raises(SpecError, match="a profile cannot borrow its own tables") as err:
        load_hardware(_borrower(tmp_path, "self", "self.toml"))
    assert "op_tables_from" in str(err.value) and "self.toml" in str(err.value)
    _borrower(tmp_path, "a", "b.toml")
    with pytest.raises(SpecError, match="'a.toml' borrows its own tables from 'b.toml': name that profile instead"):
        load_hardware(_borrower(tmp_path, "b", "a.toml"))


def test_a_calibrated_copy_of_a_borrower_loads_with_its_tables_once(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "lender.toml").write_text((PROFILES / "b200.toml").read_text(encoding="utf-8"))
    _borrower(tmp_path / "a", "borrow", "lender.toml")
    monkeypatch.chdir(tmp_path)
    for prior, out in (("a/borrow.toml", "b/relative.toml"), ("gb200-nvl72", "b/builtin.toml")):
        assert main(["calibrate", str(LOG), "--hardware", prior, "-o", out, "--gpus-per-thread", "8"]) == 0
        copy = load_hardware(out)
        assert len(copy.efficiency.op_tables) == len(load_hardware(prior).efficiency.op_tables) == \
            len(load_hardware("b200").efficiency.op_tables)
    assert load_hardware("b/relative.toml").efficiency.op_tables_from == str((tmp_path / "a" / "lender.toml"))
    assert load_hardware("b/builtin.toml").efficiency.op_tables_from == "b200"
    assert lender_for_copy(str(PROFILES / "b200.toml"), tmp_path / "x.toml") == "b200"
    # the operator calibrator's copy likewise: its fitted table first, the lender's 15 after it, each once
    ops = tmp_path / "ops.jsonl"
    ops.write_text("".join(json.dumps({"record": "op", "schema_version": 1, "kind": "gemm", "dtype": "bfloat16",
                                       "pass": "fwd", "shape": [m, n, k], "flops": 2 * m * n * k,
                                       "time_s": 2 * m * n * k / 1.5e15 + 5e-6}) + "\n"
                           for m in (1024, 2048, 4096, 8192) for n in (1024, 4096) for k in (2048, 8192)))
    fitted = calibrate_ops([str(ops)], "a/borrow.toml", "b/ops.toml").profile.efficiency
    assert [t.status for t in fitted.op_tables].count("measured") == 1
    assert len(fitted.op_tables) == 1 + len(load_hardware("b200").efficiency.op_tables) == 16


# --- (3) distinct_rows on NaN (tests/des/test_slot_walk.py covers one bit, -0.0 and a collision): bit for bit,
# a NaN row is its own group, two NaNs of one payload one group, of two payloads two. Passed on main too.

def test_distinct_rows_groups_nans_by_their_bits():
    other_nan = np.array([0x7FF8000000000001], dtype=np.uint64).view(float)[0]
    a = np.array([[np.nan, 1.0], [1.0, 1.0], [np.nan, 1.0], [other_nan, 1.0], [1.0, 1.0]])
    rows, again = distinct_rows(a)
    assert np.array_equal(rows[again].view(np.uint64), a.view(np.uint64)) and len(rows) == 3
    assert again[0] == again[2] and again[1] == again[4] and len({again[0], again[1], again[3]}) == 3
