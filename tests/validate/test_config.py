"""Sweep-file parsing, validation messages and the capacity rule (no processes spawned)."""

from pathlib import Path

import pytest

from validate.config import LayerConfig, collective_sizes, expert_capacity, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[2]

LAYER = """
[[layer]]
name = "a"
world_size = 2
tokens_per_rank = 64
d_model = 8
d_ff = 16
experts_per_rank = 2
"""


def test_capacity_switch_floor_and_megatron_ceil():
    # Switch App. F per-core: floor(T * k * CF / E); Megatron get_capacity: ceil(...)
    assert expert_capacity(1000, 1, 1.25, 16, "switch") == 78      # 78.125
    assert expert_capacity(1000, 1, 1.25, 16, "megatron") == 79
    assert expert_capacity(1000, 2, 1.0, 16, "switch") == 125
    assert expert_capacity(100, 1, 1.1, 11) == 10                  # exact decimal, not 9.999..
    assert expert_capacity(10, 1, 0.1, 64, min_capacity=4) == 4    # min capacity
    assert expert_capacity(10, 1, 0.1, 64, min_capacity=0) == 0
    assert expert_capacity(16, 2, 8.0, 4) == 16                    # capped at tokens per rank
    with pytest.raises(ValueError, match="capacity rule"):
        expert_capacity(10, 1, 1.0, 2, "bogus")


def test_layer_derived_quantities():
    cfg = LayerConfig(name="x", tokens_per_rank=4096, d_model=8, d_ff=8, experts_per_rank=4,
                      world_size=8, ep_size=4, top_k=2, capacity_factor=1.25)
    assert (cfg.ep, cfg.dp, cfg.num_experts) == (4, 2, 16)
    assert cfg.capacity == 640   # 4096 * 2 * 1.25 / 16


def test_grid_expansion_and_defaults():
    text = "[defaults]\nrepeats = 3\n" + LAYER.replace("d_model = 8", "d_model = [8, 16]") + "top_k = [1, 2]\n"
    sweep = parse_sweep(text)
    names = [c.name for c in sweep.layers]
    assert names == ["a[d_model=8,top_k=1]", "a[d_model=8,top_k=2]",
                     "a[d_model=16,top_k=1]", "a[d_model=16,top_k=2]"]
    assert all(c.repeats == 3 for c in sweep.layers)


def test_collective_sizes():
    assert collective_sizes(1024, 8192) == (1024, 2048, 4096, 8192)
    sweep = parse_sweep('[[collective]]\nops = ["all_reduce", "all_gather"]\nmin_bytes = 1024\n'
                        'max_bytes = 4096\nworld_size = [2, 4]')
    assert [(c.op, c.world_size) for c in sweep.collectives] == [
        ("all_reduce", 2), ("all_gather", 2), ("all_reduce", 4), ("all_gather", 4)]


@pytest.mark.parametrize("text, message", [
    (LAYER.replace("d_model = 8", "d_model = 0"), r"\[\[layer\]\] #0 \('a'\): field 'd_model' must be >= 1"),
    (LAYER.replace("d_model = 8", 'd_model = "8"'), "field 'd_model' must be an integer"),
    (LAYER + "top_k = 5\n", r"field 'top_k' must be in 1..4"),
    (LAYER + 'dtype = "float16"\n', r"field 'dtype' must be one of \['float32', 'bfloat16'\]"),
    (LAYER + "ep_size = 3\n", r"field 'ep_size' must be in 1..2"),
    (LAYER.replace("world_size = 2", "world_size = 4") + "ep_size = 3\n", "must divide world_size=4"),
    (LAYER + "capacity_factor = -1.0\n", "field 'capacity_factor' must be > 0"),
    (LAYER + "colour = 1\n", "field 'colour' is not a layer field"),
    (LAYER + "warmup = [1, 2]\n", "field 'warmup' may not be a list"),
    (LAYER.replace("d_ff = 16\n", ""), "field 'd_ff' is required"),
    (LAYER + "normalize_gates = 1\n", "field 'normalize_gates' must be true or false"),
    (LAYER + LAYER, "duplicate configuration 'a'"),
    ("[[collective]]\nops = ['broadcast']", r"\[\[collective\]\] #0: field 'ops' must be one of"),
    ("[[collective]]\nsizes_bytes = [1024]\nmin_bytes = 8", "cannot be combined"),
    ("[oops]\nx = 1", "unknown top-level key 'oops'"),
    ("[defaults]\nname = 'x'\n" + LAYER, r"\[defaults\]: field 'name' is not a layer field"),
    ("", "no \\[\\[layer\\]\\] or \\[\\[collective\\]\\] entries"),
    ("[[layer]\n", "not valid TOML"),
])
def test_bad_sweeps_name_file_and_field(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_sweep(text, "bad.toml")
    assert str(info.value).startswith("bad.toml: ")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read sweep file"):
        load_sweep(tmp_path / "nope.toml")


def test_bundled_sweeps_parse():
    cpu = load_sweep(ROOT / "validate/sweeps/cpu-small.toml")
    assert {c.world_size for c in cpu.layers} == {2}
    tokens = {c.tokens_per_rank for c in cpu.layers}
    assert min(tokens) == 256 and max(tokens) == 4096
    assert {c.capacity_factor for c in cpu.layers} >= {1.0, 1.25, 2.0}
    assert cpu.collectives[0].sizes_bytes[0] == 1024 and cpu.collectives[0].sizes_bytes[-1] == 16 * 2**20
    gpu = load_sweep(ROOT / "validate/sweeps/gpu-node.toml")
    assert 8 in {c.world_size for c in gpu.layers}
    assert all(c.dtype in ("bfloat16", "float32") for c in gpu.layers)
