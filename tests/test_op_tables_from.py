"""`efficiency.op_tables_from` (session 23, bwtables): a profile borrows another's [[efficiency.op_table]] entries as
fractions of its own peaks, after its own tables, one level only; gb200-nvl72 / gb300-nvl72 / b300 borrow b200's."""

from __future__ import annotations

import pytest
from pytest import approx

from moesim.errors import SpecError
from moesim.ops.base import Op
from moesim.ops.price import op_time_s
from moesim.paths import builtin_dir
from moesim.specs.load import load_hardware

B200 = builtin_dir("hardware_profiles") / "b200.toml"


def _profile(tmp_path, name: str, efficiency_extra: str) -> str:
    """A copy of gb200-nvl72 with its op_tables_from line replaced by `efficiency_extra`."""
    text = (builtin_dir("hardware_profiles") / "gb200-nvl72.toml").read_text(encoding="utf-8")
    assert 'op_tables_from = "b200"\n' in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace('op_tables_from = "b200"\n', efficiency_extra), encoding="utf-8")
    return str(path)


def test_a_borrowed_gemm_takes_the_lenders_fraction_of_this_chips_peak():
    """Same shape, same fraction: GB200's BF16 GEMM time is B200's x 2250 / 2500 (the two NVIDIA peaks)."""
    b200, gb200 = load_hardware("b200"), load_hardware("gb200-nvl72")
    assert gb200.chip.peak_for("bfloat16") / b200.chip.peak_for("bfloat16") == approx(2500 / 2250)
    gemm = Op(name="fc1", kind="gemm", part="dense_ffn", dtype="bfloat16", pass_="fwd", flops=2.0 * 4096 * 14336 * 4096,
              shape=(4096.0, 14336.0, 4096.0))
    t_b200, t_gb200 = op_time_s(gemm, b200), op_time_s(gemm, gb200)
    launch = b200.efficiency.kernel_launch_s
    assert gb200.efficiency.kernel_launch_s == launch
    assert (t_gb200 - launch) == approx((t_b200 - launch) * 2250 / 2500)
    # ... and not the FLOP-keyed prior it used before (0.72 at 1e12 FLOP and above): slower than that
    assert (t_gb200 - launch) > gemm.flops / (gb200.chip.peak_for("bfloat16") * 0.72)


def test_b300_prices_a_borrowed_gemm_as_b200_does():
    """B300's stated BF16 peak is B200's (2250 dense): a borrowed table gives the same GEMM time."""
    gemm = Op(name="fc2", kind="gemm", part="dense_ffn", dtype="bfloat16", pass_="dgrad", flops=2.0 * 8192 * 4096 * 14336,
              shape=(8192.0, 4096.0, 14336.0))
    assert op_time_s(gemm, load_hardware("b300")) == approx(op_time_s(gemm, load_hardware("b200")))


def test_own_tables_come_first(tmp_path):
    """A table of the profile's own beats a borrowed one of the same kind, dtype, pass and operator."""
    own = ('op_tables_from = "b200"\n[[efficiency.op_table]]\nkind = "gemm"\ndtype = "bfloat16"\npass = "fwd"\n'
           'status = "measured"\nmeasured_on = "test"\nsource = "test"\npoints = [[4096, 4096, 4096, 0.3]]\n')
    text = (builtin_dir("hardware_profiles") / "gb200-nvl72.toml").read_text(encoding="utf-8")
    head, tail = text.split("[[interconnect]]", 1)
    path = tmp_path / "own-first.toml"
    path.write_text(head.replace('op_tables_from = "b200"\n', "") + own + "\n[[interconnect]]" + tail, encoding="utf-8")
    hw = load_hardware(str(path))
    assert hw.efficiency.op_tables[0].source == "test"
    assert len(hw.efficiency.op_tables) == 1 + len(load_hardware("b200").efficiency.op_tables)
    gemm = Op(name="qkv", kind="gemm", part="attention", dtype="bfloat16", pass_="fwd", flops=2.0 * 4096 ** 3,
              shape=(4096.0, 4096.0, 4096.0))
    assert op_time_s(gemm, hw) == approx(gemm.flops / (hw.chip.peak_for("bfloat16") * 0.3)
                                         + hw.efficiency.kernel_launch_s)


def test_a_path_lender_works_and_unset_borrows_nothing(tmp_path):
    by_path = load_hardware(_profile(tmp_path, "by-path", f'op_tables_from = "{B200}"\n'))
    assert [t.points for t in by_path.efficiency.op_tables] == [t.points for t in load_hardware("b200").efficiency.op_tables]
    unset = load_hardware(_profile(tmp_path, "unset", ""))
    assert unset.efficiency.op_tables == () and unset.efficiency.op_tables_from == ""


@pytest.mark.parametrize("lender, message", [
    ("b2000", "unknown hardware profile 'b2000'"),
    ("gb200-nvl72", "'gb200-nvl72' borrows its own tables from 'b200': name that profile instead"),
    ("h200", "'h200' has no [[efficiency.op_table]] to borrow"),
])
def test_bad_lenders_are_named(tmp_path, lender, message):
    path = _profile(tmp_path, "bad", f'op_tables_from = "{lender}"\n')
    with pytest.raises(SpecError) as err:
        load_hardware(path)
    text = str(err.value)
    assert message in text and "op_tables_from" in text and "bad.toml" in text
