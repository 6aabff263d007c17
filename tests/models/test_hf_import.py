"""HuggingFace config.json import: each test config (a copy of a public config, see data/SOURCES.md)
gives exactly the parameter counts of the library's TOML definition; errors name file and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from moesim.arithmetic import param_counts
from moesim.cli import main
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.flops import forward_flops_per_sequence
from moesim.models.hf import model_from_hf_config, supported_model_types
from moesim.specs.load import load_model, load_scenario

DATA = Path(__file__).resolve().parent / "data"

# test config folder -> library model with the same architecture
PAIRS = [
    ("mixtral-8x7b-v0.1", "mixtral-8x7b"),
    ("mixtral-8x22b-v0.1", "mixtral-8x22b"),
    ("mistral-7b-v0.1", "mistral-7b"),
    ("llama-2-7b-hf", "llama-2-7b"),
    ("meta-llama-3-8b", "llama-3-8b"),
    ("qwen1.5-moe-a2.7b", "qwen1.5-moe-a2.7b"),
    ("qwen2-57b-a14b", "qwen2-57b-a14b"),
    ("qwen3-30b-a3b", "qwen3-30b-a3b"),
    ("deepseek-v2", "deepseek-v2"),
    ("deepseek-v2-lite", "deepseek-v2-lite"),
    ("deepseek-v3", "deepseek-v3"),
    ("olmoe-1b-7b-0924", "olmoe-1b-7b"),
    ("gpt-oss-120b", "gpt-oss-120b"),
    ("dbrx-base", "dbrx"),
    ("switch-base-128", "switch-base-128"),
    ("t5-base", "t5-base"),
]


def config(folder: str) -> Path:
    return DATA / folder / "config.json"


@pytest.mark.parametrize("folder,library", PAIRS)
def test_hf_import_matches_library_counts_exactly(folder, library):
    imported, defined = load_model(config(folder)), load_model(library)
    assert param_counts(imported).as_dict() == param_counts(defined).as_dict()
    assert imported.num_moe_layers == defined.num_moe_layers
    seq = defined.default_seq_len
    dec = defined.default_decoder_seq_len if defined.architecture == "encoder_decoder" else 0
    assert forward_flops_per_sequence(imported, seq, dec) == forward_flops_per_sequence(defined, seq, dec)


@pytest.mark.parametrize("folder,expected", [
    # exact counts of the released checkpoints (HF model pages list these totals)
    ("llama-2-7b-hf", 6_738_415_616), ("mistral-7b-v0.1", 7_241_732_096), ("meta-llama-3-8b", 8_030_261_248),
    ("mixtral-8x7b-v0.1", 46_702_792_704),
    # DeepSeek-V3 main model (61 layers, no MTP module): 671,026,419,200
    ("deepseek-v3", 671_026_419_200),
])
def test_hf_import_exact_checkpoint_counts(folder, expected):
    assert param_counts(load_model(config(folder))).total == expected


def test_deepseek_v3_import_fields():
    m = load_model(config("deepseek-v3"))
    att, moe = m.attention, m.moe
    assert (att.kind, att.q_lora_rank, att.kv_lora_rank, att.head_dim, att.qk_rope_head_dim, att.v_head_dim) == \
        ("mla", 1536, 512, 128, 64, 128)
    assert (moe.num_experts, moe.top_k, moe.num_shared_experts, moe.leading_dense_layers) == (256, 8, 1, 3)
    assert (moe.router_score, moe.router_bias, moe.dropless) == ("sigmoid", True, True)
    assert m.num_moe_layers == 58 and m.name == "DeepSeek-V3"
    assert "multi-token-prediction" in m.notes


def test_v2_lite_null_q_lora_rank_means_full_query_projection():
    assert load_model(config("deepseek-v2-lite")).attention.q_lora_rank == 0


def test_qwen_shared_expert_gate_and_biases():
    m = load_model(config("qwen1.5-moe-a2.7b"))
    assert m.moe.shared_expert_gate and m.moe.shared_expert_d_ff == 5632 and m.attention.qkv_bias


def test_dbrx_nested_configs():
    m = load_model(config("dbrx-base"))
    assert (m.attention.num_kv_heads, m.moe.num_experts, m.moe.top_k, m.d_ff) == (8, 16, 4, 10752)


def test_cli_model_reads_config_json(capsys):
    assert main(["model", str(config("mixtral-8x7b-v0.1")), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_params"] == 46_702_792_704 and out["active_params"] == 12_879_925_248


def test_scenario_with_config_json_model(tmp_path):
    shutil.copytree(DATA / "mixtral-8x7b-v0.1", tmp_path / "mixtral")
    (tmp_path / "s.toml").write_text(
        'schema_version = 1\nname = "hf"\nmodel = "mixtral/config.json"\nhardware = "h100-sxm"\ndevices = 16\n'
        "[training]\nglobal_batch_sequences = 32\nseq_len = 2048\nmicro_batches = 2\n"
        "[layout]\ndp = 4\ntp = 4\nep = 4\npp = 1\n")
    scenario = load_scenario(tmp_path / "s.toml")
    assert scenario.model.moe.num_experts == 8
    assert estimate(scenario).step_time_s > 0


def test_unknown_model_type_lists_supported(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gpt2", "n_embd": 768}))
    with pytest.raises(SpecError) as err:
        load_model(path)
    text = str(err.value)
    assert str(path) in text and "model_type 'gpt2' is not supported" in text
    for family in ("switch_transformers", "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe",
                   "dbrx", "llama", "mistral", "t5"):
        assert family in text and family in supported_model_types()


def test_missing_key_names_file_and_key(tmp_path):
    data = json.loads(config("mixtral-8x7b-v0.1").read_text())
    del data["num_local_experts"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match="num_local_experts") as err:
        model_from_hf_config(path)
    assert str(path) in str(err.value) and "required key is missing" in str(err.value)


def test_missing_nested_key_names_the_path(tmp_path):
    data = json.loads(config("dbrx-base").read_text())
    del data["attn_config"]["kv_n_heads"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"attn_config\.kv_n_heads"):
        load_model(path)


def test_wrong_type_and_bad_json(tmp_path):
    data = json.loads(config("olmoe-1b-7b-0924").read_text())
    data["num_experts"] = "64"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match="num_experts.*expected integer"):
        load_model(path)
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_model(path)


def _write(tmp_path, folder: str, **changes) -> Path:
    data = json.loads(config(folder).read_text())
    data.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_deepseek_moe_layer_freq_maps_to_hf_layers(tmp_path):
    """HF: layer i sparse iff i >= first_k_dense_replace and i % moe_layer_freq == 0."""
    m = load_model(_write(tmp_path, "deepseek-v2-lite", moe_layer_freq=2, first_k_dense_replace=3))
    sparse = [i for i in range(m.decoder_layers) if m.moe.is_moe_layer("decoder", i)]
    assert sparse == [i for i in range(27) if i >= 3 and i % 2 == 0]
    with pytest.raises(SpecError, match="moe_layer_freq"):
        load_model(_write(tmp_path, "deepseek-v2-lite", moe_layer_freq=2, first_k_dense_replace=0))


def test_qwen_sparse_step_and_mlp_only_layers(tmp_path):
    m = load_model(_write(tmp_path, "qwen3-30b-a3b", decoder_sparse_step=2))
    assert [i for i in range(8) if m.moe.is_moe_layer("decoder", i)] == [1, 3, 5, 7]  # HF: (i + 1) % 2 == 0
    m = load_model(_write(tmp_path, "qwen3-30b-a3b", mlp_only_layers=[0, 1]))
    assert m.moe.leading_dense_layers == 2 and m.num_moe_layers == 46
    with pytest.raises(SpecError, match="mlp_only_layers"):
        load_model(_write(tmp_path, "qwen3-30b-a3b", mlp_only_layers=[5]))


def test_switch_sparse_steps_must_agree(tmp_path):
    with pytest.raises(SpecError, match="sparse steps differ"):
        load_model(_write(tmp_path, "switch-base-128", decoder_sparse_step=4))
    m = load_model(_write(tmp_path, "switch-base-128", decoder_sparse_step=0))
    assert m.moe.stacks == ("encoder",) and m.num_moe_layers == 6


def test_gpt_oss_layer_types_become_the_attention_pattern(tmp_path):
    """transformers 828a27fd GptOssConfig: layer_types (default sliding_attention where (i + 1) % 2) and
    sliding_window; the sinks (GptOssAttention.sinks) always. The list is cut to its shortest cycle."""
    m = load_model(config("gpt-oss-120b"))
    att = m.attention
    assert (att.layer_pattern, att.window_tokens, att.softmax_type) == (("sliding_window", "causal"), 128, "learnable")
    assert load_model(_write(tmp_path, "gpt-oss-120b", layer_types=None)).attention.layer_pattern == att.layer_pattern
    three = ["sliding_attention", "sliding_attention", "full_attention"] * 12
    assert load_model(_write(tmp_path, "gpt-oss-120b", layer_types=three)).attention.layer_pattern == (
        "sliding_window", "sliding_window", "causal")
    causal = load_model(_write(tmp_path, "gpt-oss-120b", layer_types=["full_attention"] * 36)).attention
    assert (causal.layer_pattern, causal.window_tokens) == ((), 0)
    with pytest.raises(SpecError, match="layer type 'chunked_attention' is not supported") as err:
        load_model(_write(tmp_path, "gpt-oss-120b", layer_types=["chunked_attention"] * 36))
    assert "layer_types" in str(err.value)
    with pytest.raises(SpecError, match="2 layer types for num_hidden_layers = 36"):
        load_model(_write(tmp_path, "gpt-oss-120b", layer_types=["full_attention"] * 2))
