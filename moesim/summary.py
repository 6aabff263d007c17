"""Whole-model summaries (what `moesim model` prints): parameters and FLOPs with their conventions."""

from __future__ import annotations

from moesim.arithmetic import param_counts
from moesim.flops import forward_flops_per_sequence, sequence_tokens, training_flops_per_sequence
from moesim.specs.model import ModelSpec


def model_summary(model: ModelSpec, seq_len: int | None = None, decoder_seq_len: int | None = None) -> dict:
    """Parameters, FLOPs per token and per sequence (exact and Kaplan conventions) of `model`.

    Per-token figures divide the per-sequence FLOPs by the tokens a sequence puts through the
    model (encoder inputs + decoder targets for an encoder-decoder).
    """
    seq = seq_len or model.default_seq_len
    dec = (decoder_seq_len or model.default_decoder_seq_len) if model.architecture == "encoder_decoder" else 0
    counts = param_counts(model)
    tokens = sequence_tokens(model, seq, dec)
    fwd = forward_flops_per_sequence(model, seq, dec)
    train = training_flops_per_sequence(model, seq, dec)
    summary = {
        "name": model.name,
        "architecture": model.architecture,
        "seq_len": seq,
        "decoder_seq_len": dec,
        "tokens_per_sequence": tokens,
        **counts.as_dict(),
        "forward_flops_per_token": fwd / tokens,
        "training_flops_per_token": train / tokens,
        "forward_flops_per_sequence": fwd,
        "training_flops_per_sequence": train,
        "forward_flops_per_sequence_kaplan": forward_flops_per_sequence(model, seq, dec, "kaplan"),
        "flops_convention": "exact: every matmul incl. router, QK^T and AV, cross-attention K/V on encoder "
                            "tokens; training = 3 x forward. kaplan: 2N + 2 n_layer n_ctx d_attn per token "
                            "(Kaplan et al. 2020), as Switch Table 9 counts",
        "layers": {"encoder": model.encoder_layers, "decoder": model.decoder_layers,
                   "moe": model.num_moe_layers},
        "source": model.source,
    }
    if model.moe is not None:
        moe = model.moe
        summary["moe"] = {
            "num_experts": moe.num_experts, "top_k": moe.top_k, "expert_d_ff": moe.expert_d_ff,
            "num_shared_experts": moe.num_shared_experts, "layer_freq": moe.layer_freq,
            "capacity_factor_train": moe.capacity_factor_train, "capacity_factor_eval": moe.capacity_factor_eval,
            "capacity_rule": moe.capacity_rule,
        }
    return summary
