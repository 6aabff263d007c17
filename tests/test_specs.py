"""Specs and loaders: strict keys, clear errors naming file and field, layout rules."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import assume, given, settings, strategies as st

from moesim.errors import SpecError
from moesim.paths import builtin_dir, builtin_names
from moesim.specs.layout import Layout, layout_problems, parse_layout_text, resolve_layout
from moesim.specs.load import load_hardware, load_model, load_scenario

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", builtin_names("models"))
def test_every_model_loads(name):
    model = load_model(name)
    assert model.name == name and model.source


@pytest.mark.parametrize("name", builtin_names("scenarios"))
def test_every_scenario_loads_and_resolves(name):
    scenario = load_scenario(name)
    layout = scenario.resolve()
    assert layout.devices == scenario.devices


def _write_model(tmp_path: Path, edit) -> Path:
    data = (builtin_dir("models") / "switch-base-8.toml").read_text()
    path = tmp_path / "model.toml"
    path.write_text(edit(data))
    return path


@pytest.mark.parametrize("edit,field,fragment", [
    (lambda t: t.replace("d_model = 768", "d_model = 768\nd_modle = 1"), "d_modle", "unknown key"),
    (lambda t: t.replace("d_model = 768\n", ""), "d_model", "required key is missing"),
    (lambda t: t.replace("d_model = 768", 'd_model = "768"'), "d_model", "expected integer"),
    (lambda t: t.replace('ffn_kind = "relu"', 'ffn_kind = "relu2"'), "ffn_kind", "allowed: relu, gelu, geglu, swiglu"),
    (lambda t: t.replace("num_experts = 8", "num_experts = 0"), "moe.num_experts", "0 is out of range (allowed: an integer >= 1"),
    (lambda t: t.replace("schema_version = 1", "schema_version = 9"), "schema_version", "not supported"),
    (lambda t: t.replace("top_k = 1", "top_k = 9"), "moe.top_k", "exceeds num_experts"),
    (lambda t: t + "\n[[[", None, "not valid TOML"),
])
def test_model_file_errors_name_file_and_field(tmp_path, edit, field, fragment):
    path = _write_model(tmp_path, edit)
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    message = str(info.value)
    assert str(path) in message and fragment in message
    if field:
        assert f"field '{field}'" in message


def test_unknown_names_list_the_built_ins():
    with pytest.raises(SpecError, match="allowed: .*switch-c-2048"):
        load_model("switch-d")
    with pytest.raises(SpecError, match="allowed: .*tpu-v3"):
        load_hardware("tpu-v9")
    with pytest.raises(SpecError, match="no such file"):
        load_scenario("missing/scenario.toml")


def test_yaml_scenario_equals_toml(tmp_path):
    import yaml

    data = tomllib.loads((REPO / "scenarios" / "switch-base-128-tpu-v3.toml").read_text())
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    assert load_scenario(str(tmp_path / "s.yaml")).resolve() == load_scenario("switch-base-128-tpu-v3").resolve()


def test_scenario_unknown_training_key(tmp_path):
    text = (REPO / "scenarios" / "switch-base-128-tpu-v3.toml").read_text().replace(
        "micro_batches = 1", "micro_batches = 1\nmicrobatches = 2")
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SpecError, match=r"s\.toml: field 'training\.microbatches': unknown key"):
        load_scenario(str(tmp_path / "s.toml"))


def test_scenario_moe_table_sets_routing_of_the_run():
    """A scenario's [moe] table replaces the model's routing-group keys (Mesh-TF groups of 1024 for
    Switch Table 1) and leaves the architecture alone."""
    scenario, model = load_scenario("switch-base-128-tpu-v3"), load_model("switch-base-128")
    assert (model.moe.group_size_tokens, model.moe.min_expert_capacity) == (8192, 0)
    assert (scenario.model.moe.group_size_tokens, scenario.model.moe.min_expert_capacity) == (1024, 4)
    assert scenario.model.moe.num_experts == model.moe.num_experts and scenario.model.d_model == model.d_model


@pytest.mark.parametrize("edit,fragment", [
    (lambda t: t.replace("group_size_tokens = 1024", "num_experts = 64"),
     r"field 'moe\.num_experts': unknown key"),
    (lambda t: t.replace("group_size_tokens = 1024", "group_size_tokens = -1"), "-1 is out of range"),
    (lambda t: t.replace('model = "switch-base-128"', 'model = "t5-base"'), "has no mixture-of-experts layers"),
])
def test_scenario_moe_table_errors(tmp_path, edit, fragment):
    text = edit((REPO / "scenarios" / "switch-base-128-tpu-v3.toml").read_text())
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SpecError, match=fragment):
        load_scenario(str(tmp_path / "s.toml"))


def test_devices_outside_profile():
    with pytest.raises(SpecError, match="outside 1..2048"):
        load_scenario("switch-c-2048-tpu-v3", devices=4096)
    with pytest.raises(SpecError, match="2 devices per chip"):
        load_scenario("switch-c-2048-tpu-v3", devices=7)


def test_layout_text_parsing():
    assert parse_layout_text("dp=8,tp=2,ep=8") == {"dp": 8, "tp": 2, "ep": 8}
    assert parse_layout_text("order=tp-dp-ep-pp")["order"] == ("tp", "dp", "ep", "pp")
    with pytest.raises(SpecError, match="allowed: dp, tp, ep, pp, etp, order"):
        parse_layout_text("dq=2")
    with pytest.raises(SpecError, match="not an integer"):
        parse_layout_text("dp=two")


def test_impossible_layout_lists_every_degree():
    scenario = load_scenario("switch-base-128-tpu-v3")
    with pytest.raises(SpecError) as info:
        scenario.resolve(parse_layout_text("dp=8,tp=8,ep=3"), source="--layout")
    message = str(info.value)
    for fragment in ("tp·dp·pp = 8·8·1 = 64 must equal devices = 32", "num_experts = 128 is not divisible by ep = 3",
                     "num_heads = 12 is not divisible by tp = 8", "field '--layout'"):
        assert fragment in message
    assert "dp=8, tp=8, ep=3, pp=1, etp=1" in message


divisor = st.sampled_from([1, 2, 3, 4, 6, 8, 16])


@settings(max_examples=300, deadline=None)
@given(dp=divisor, tp=divisor, ep=divisor, pp=divisor, etp=divisor, experts=st.sampled_from([1, 8, 12, 64]),
       heads=st.sampled_from([8, 12, 30]), layers=st.sampled_from([5, 12, 24, 30]), mb=st.sampled_from([1, 2, 4]))
def test_layout_rules_match_their_definition(dp, tp, ep, pp, etp, experts, heads, layers, mb):
    """A layout is valid exactly when the Megatron-Core folding rules hold (modeling.md §2.1)."""
    layout = Layout(dp=dp, tp=tp, ep=ep, pp=pp, etp=etp)
    devices = dp * tp * pp
    problems = layout_problems(layout, devices=devices, num_experts=experts, num_heads=heads, num_kv_heads=heads,
                               d_ff=3072, expert_d_ff=3072, num_layers=layers, global_batch_sequences=96,
                               micro_batches=mb)
    valid = ((tp * dp) % (etp * ep) == 0 and (experts % ep == 0 if experts > 1 else ep == 1)
             and heads % tp == 0 and 3072 % tp == 0 and 3072 % etp == 0 and pp <= layers
             and 96 % (dp * mb) == 0)
    assert (not problems) == valid, problems


@settings(max_examples=100, deadline=None)
@given(devices=st.sampled_from([8, 16, 32, 64, 128]), experts=st.sampled_from([8, 64, 128, 2048]),
       tp=st.sampled_from([1, 2, 4]))
def test_resolved_defaults_cover_devices(devices, experts, tp):
    assume(devices % tp == 0)
    layout = resolve_layout({"tp": tp}, devices=devices, num_experts=experts)
    assert layout.devices == devices
    assert layout.ep == math.gcd(experts, devices)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(["name", "d_model", "vocab_size", "ffn_kind", "d_ff", "source", "architecture",
                                "tied_embeddings", "attention", "decoder_layers"]), min_size=1))
def test_removing_required_keys_always_gives_spec_error(tmp_path_factory, removed):
    data = tomllib.loads((builtin_dir("models") / "switch-base-8.toml").read_text())
    for key in removed:
        data.pop(key, None)
    import tomli_w

    path = tmp_path_factory.mktemp("m") / "m.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(SpecError):
        load_model(str(path))
