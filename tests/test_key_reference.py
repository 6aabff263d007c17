"""docs/keys.md is generated from the loaders and is current; every key has a meaning; the routing
histogram examples it shows load (issue #14 item 8)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from moesim.des.routing import load_histograms
from moesim.errors import SpecError

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_key_reference_is_current(load_script):
    text = load_script("docs/make_keys.py").render()  # raises when a key the loaders read has no meaning
    assert (DOCS / "keys.md").read_text(encoding="utf-8") == text, "run python docs/make_keys.py"


def test_every_loader_key_is_listed_with_type_and_default():
    text = (DOCS / "keys.md").read_text(encoding="utf-8")
    for row in ("| `training.zero_stage` | integer |  | [0, 3] integer | 0 |", "| `layout.mb` | integer |",
                "| `search.max_micro_batches` | integer |  | [1, 1048576] integer | 64 |", "| `chip.hbm_gib_per_chip` | number | GiB",
                "| `interconnect.latency_us` | number | µs | [0, 1000000] | required |", "| `moe.capacity_rule` | string |  |  | \"switch\" |",
                "| `price_per_device_hour_usd` | number | USD | [0, 10000] | optional |"):
        assert row in text, row


def test_a_key_without_a_meaning_fails(tmp_path, monkeypatch, load_script):
    make_keys = load_script("docs/make_keys.py")
    meanings = (DOCS / "key_meanings.toml").read_text(encoding="utf-8")
    stripped = tmp_path / "key_meanings.toml"
    stripped.write_text(meanings.replace('"training.zero_stage" = ', '"training.zero_stag" = '), encoding="utf-8")
    monkeypatch.setattr(make_keys, "MEANINGS", stripped)
    with pytest.raises(KeyError, match="scenario: training.zero_stage"):
        make_keys.render()


def test_routing_examples_load(tmp_path):
    examples = tomllib.loads((DOCS / "key_meanings.toml").read_text(encoding="utf-8"))["routing_file"]["examples"]
    shapes = {}
    for name, text in examples:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        rows = load_histograms(path, num_experts=4)
        assert all(abs(sum(r) - 1) < 1e-12 for r in rows)
        shapes[name] = len(rows)
    assert shapes == {"histogram.json": 1, "layers.json": 2, "histogram.csv": 2, "column.csv": 1}
    with pytest.raises(SpecError, match="has 4 entries but the model has 8 experts"):
        load_histograms(tmp_path / "histogram.json", num_experts=8)
