"""tests/data/nccl/logs.toml is read strictly (moesim/calibrate/nccl_table.py read_manifest): an unknown key, a
missing key, a value of the wrong type or outside what the readers take is one SpecError naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.calibrate.nccl_table import read_manifest
from moesim.errors import SpecError

MANIFEST = Path(__file__).resolve().parent.parent / "data" / "nccl" / "logs.toml"
ENTRY = ('[[log]]\nfile = "x_all_reduce_perf.log"\nhardware = "h100-sxm"\ncluster = "c"\nhealthy = true\n'
         'shape = false\nnote = "n"\n')


def manifest(tmp_path, extra: str = "", entry: str = ENTRY) -> Path:
    path = tmp_path / "logs.toml"
    path.write_text("schema_version = 1\n\n" + entry + extra, encoding="utf-8")
    return path


def test_the_shipped_manifest_reads():
    assert len(read_manifest(MANIFEST)) >= 38


def test_a_good_entry_reads(tmp_path):
    assert read_manifest(manifest(tmp_path, 'ranks = 16\nnccl_proto = "^LL"\n'))[0]["ranks"] == 16


@pytest.mark.parametrize("extra, fragments", [
    ("colour = 1\n", ("log 1 (x_all_reduce_perf.log)", "unknown keys ['colour']", "allowed: ")),
    ('ranks = "16"\n', ("field 'ranks'", "expected int, got '16'")),
    ("ranks = true\n", ("field 'ranks'", "expected int, got True")),
    ("ranks = 0\n", ("field 'ranks'", "must be >= 1")),
    ("gpus_per_thread = -2\n", ("field 'gpus_per_thread'", "must be >= 1")),
    ('healthy_ = "yes"\n', ("unknown keys ['healthy_']",)),
    ('op = "allreduce"\n', ("field 'op'", "unknown collective 'allreduce'", "all_to_all")),
    ('nccl_algo = "ring,foo"\n', ("log 1 (x_all_reduce_perf.log)", "field 'nccl_algo'", "unknown NCCL algorithm")),
    ('nccl_proto = "LL,Foo"\n', ("log 1 (x_all_reduce_perf.log)", "field 'nccl_proto'", "unknown NCCL protocol")),
    ('host_cpu = "bogus"\n', ("log 1 (x_all_reduce_perf.log)", "field 'host_cpu'", "allowed: intel, amd")),
    ('collnet = "yes"\n', ("field 'collnet'", "expected bool")),
    ("nccl_max_nchannels = 0\n", ("log 1 (x_all_reduce_perf.log)", "field 'nccl_max_nchannels'", "integer >= 1")),
])
def test_bad_entries(tmp_path, extra, fragments):
    with pytest.raises(SpecError) as err:
        read_manifest(manifest(tmp_path, extra))
    text = str(err.value)
    assert str(tmp_path / "logs.toml") in text and "\n" not in text
    for fragment in fragments:
        assert fragment in text, text


def test_missing_key_wrong_profile_and_no_log_table(tmp_path):
    with pytest.raises(SpecError, match=r"log 1 \(x_all_reduce_perf.log\): field 'note': required key is missing"):
        read_manifest(manifest(tmp_path, entry=ENTRY.replace('note = "n"\n', "")))
    with pytest.raises(SpecError, match=r"field 'hardware': unknown hardware profile 'h100'.*allowed: a100-80gb"):
        read_manifest(manifest(tmp_path, entry=ENTRY.replace('"h100-sxm"', '"h100"')))
    with pytest.raises(SpecError, match=r"field 'log': a manifest holds schema_version and \[\[log\]\] tables only"):
        read_manifest(manifest(tmp_path, entry="[log]\nfile = 'x'\n"))
    with pytest.raises(SpecError, match="field 'log'"):
        read_manifest(manifest(tmp_path, entry=""))
