"""scripts/tree_correction_check.py (session 13 treecorr, candidate A): the docs print its block, and the tree's
bound 23 (NVIDIA/nccl ncclTopoGetAlgoTime, v2.18.1-1 .. v2.30.7-1) meets the ship rule's (b) for exact bookkeeping."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_print_the_tree_correction_check_and_rule_b_is_met(load_script, doc_block):
    script = load_script("scripts/tree_correction_check.py")
    found = script.rows()
    logs = tomllib.loads((ROOT / "tests" / "data" / "nccl" / "logs.toml").read_text(encoding="utf-8"))["log"]
    assert len(found) == len(logs) and sum(1 for r in found if r[1]) == sum(1 for e in logs if e["healthy"])
    moved, met = script.bookkeeping_met(found)
    assert met and not moved  # no collected log picks the tree/Simple all-reduce at 512 MiB - 1 GiB
    assert doc_block("tree_correction_check") == script.render().strip(), \
        "run: python scripts/tree_correction_check.py --write"


def test_the_before_bound_is_restored(load_script):
    from moesim.collectives import nccl_tuning
    from moesim.collectives.nccl import tree_correction

    script = load_script("scripts/tree_correction_check.py")
    with script.tree_bound(24):
        assert tree_correction("Simple", 2**29) == 0.9
    assert nccl_tuning._file()["tree_correction_bound"]["tree"] == 23 and tree_correction("Simple", 2**29) == 1.0
