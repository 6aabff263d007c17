"""`moesim model MODEL`: parameters and FLOPs of a built-in model, a model file or an HF config.json."""

from __future__ import annotations

import argparse

from moesim.cli.output import kv_block, print_json
from moesim.units import format_count


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="parameters and FLOPs of a model",
                              description="Parameters and FLOPs of a model: a built-in name (e.g. switch-c-2048), "
                                          "a model TOML, or a HuggingFace config.json.")
    p.add_argument("model", help="built-in model name or path")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (encoder input); default: model's")
    p.add_argument("--decoder-seq-len", type=int, default=None,
                   help="decoder target tokens (encoder-decoder); default: model's")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from moesim.specs.load import load_model
    from moesim.summary import model_summary

    summary = model_summary(load_model(args.model), args.seq_len, args.decoder_seq_len)
    if args.json:
        print_json(summary)
        return 0
    rows = [
        ("architecture", summary["architecture"]),
        ("total params", f"{format_count(summary['total_params'])} ({summary['total_params']:,})"),
        ("active params / token", f"{format_count(summary['active_params'])} ({summary['active_params']:,})"),
        ("expert params", format_count(summary["expert_params"])),
        ("params per expert", format_count(summary["params_per_expert"])),
        ("sequence", f"{summary['seq_len']} tokens" + (f" + {summary['decoder_seq_len']} decoder targets"
                                                        if summary["decoder_seq_len"] else "")),
        ("forward FLOP / token", format_count(summary["forward_flops_per_token"])),
        ("training FLOP / token", format_count(summary["training_flops_per_token"])),
        ("forward FLOP / sequence", format_count(summary["forward_flops_per_sequence"])),
        ("  Kaplan convention", format_count(summary["forward_flops_per_sequence_kaplan"])),
    ]
    if "moe" in summary:
        moe = summary["moe"]
        if moe["capacity_factor_train"] is None:
            capacity = "dropless routing (no capacity factor)"
        else:
            eval_cf = moe["capacity_factor_eval"]
            capacity = (f"capacity factor {moe['capacity_factor_train']:g} train / "
                        f"{'none set' if eval_cf is None else format(eval_cf, 'g')} eval, rule {moe['capacity_rule']}")
        rows.append(("experts", f"{moe['num_experts']} (top-{moe['top_k']}, {summary['layers']['moe']} MoE layers, "
                                f"{capacity})"))
    print(kv_block(f"model {summary['name']}", rows))
    print(f"source: {summary['source']}")
    return 0
