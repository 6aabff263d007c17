"""Sparse attention or sparse routing? One scenario priced with either kind of sparsity.

Variants of a dense decoder scenario (scenarios/sparse-attention-vs-routing-h100.toml):
- attention masks at the same parameters: causal (the baseline), GPT-3's block-sparse "fixed" and
  "strided" patterns (Child et al. 2019, arXiv 1904.10509; Brown et al. 2020 §2.1), a sliding window
  (Beltagy et al. 2020): attention time falls with the tiles computed (moesim/ops/attention.py), the
  parameters stay;
- sparse routing at the same active FLOPs per token: the FFN becomes E experts of the same d_ff with
  top-1 routing (Switch, Fedus et al. 2022): the step keeps its FLOPs (plus router and dispatch work)
  and multiplies the FFN parameters by E;
- both at once.
Block-sparse kernels are priced at the efficiency of the profile's attention table (dense flash
kernels): no public per-shape table of block-sparse kernel efficiency was found (docs/operators.md),
so their time is a lower bound wherever a block-sparse kernel runs below a dense one.
"""

from __future__ import annotations

import dataclasses

from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.model import MoESpec
from moesim.specs.scenario import Scenario

EXPERTS = 8
STRIDE_TOKENS = 1024  # l, a multiple of the 128-token tile
SUMMARY_TOKENS = 128  # c of the fixed pattern
WINDOW_TOKENS = 4096
MASKS = {"causal": {}, "block_sparse_fixed": {"sparse_stride_tokens": STRIDE_TOKENS,
                                                "sparse_summary_tokens": SUMMARY_TOKENS},
         "block_sparse_strided": {"sparse_stride_tokens": STRIDE_TOKENS},
         "sliding_window": {"window_tokens": WINDOW_TOKENS}}


def variant(scenario: Scenario, mask: str, experts: int) -> Scenario:
    """`scenario` with self-attention `mask` and, when experts > 1, an FFN of `experts` top-1 experts."""
    att = dataclasses.replace(scenario.model.attention, mask=mask, **MASKS[mask])
    model = dataclasses.replace(scenario.model, attention=att)
    if experts > 1:
        moe = MoESpec(num_experts=experts, top_k=1, expert_d_ff=scenario.model.d_ff, capacity_factor_train=1.25)
        model = dataclasses.replace(model, moe=moe, name=f"{model.name}-{experts}e")
    return dataclasses.replace(scenario, model=model)


def compare(scenario: Scenario) -> list[dict]:
    """One row per (mask, routing) variant: step time, its attention and FFN shares, parameters, MFU."""
    rows = []
    base_layout = scenario.resolve()
    for experts in (1, EXPERTS):
        for mask in MASKS:
            sc = variant(scenario, mask, experts)
            layout = Layout(dp=base_layout.dp, tp=base_layout.tp, pp=base_layout.pp,
                            ep=min(experts, base_layout.dp) if experts > 1 else 1)
            est = estimate(sc, layout)
            conv = est.flop_conventions["self_attention"]["decoder"]
            rows.append({"mask": mask, "experts": experts, "step_time_s": est.step_time_s,
                         "tokens_per_s": est.tokens_per_s, "mfu": est.mfu,
                         "computed_fraction": conv["computed_fraction"],
                         "params": _params(sc), "memory_gib": est.memory_bytes_per_device["total"] / 2**30,
                         "fits": est.fits_in_memory})
    base = rows[0]["step_time_s"]
    for r in rows:
        r["speedup"] = base / r["step_time_s"]
    return rows


def _params(scenario: Scenario) -> float:
    from moesim.arithmetic import param_counts

    return float(param_counts(scenario.model).total)


def figure(rows: list[dict], title: str):
    """Plotly bar chart: step time per variant, dense and routed FFN side by side."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for experts, color in ((1, "#4C78A8"), (EXPERTS, "#F58518")):
        sel = [r for r in rows if r["experts"] == experts]
        label = "dense FFN" if experts == 1 else f"{experts} experts, top-1 (same active FLOPs)"
        fig.add_bar(x=[r["mask"] for r in sel], y=[r["step_time_s"] for r in sel], name=label, marker_color=color,
                    hovertext=[f"{r['params'] / 1e9:.2f}B params, computed tiles {r['computed_fraction']:.1%}"
                               for r in sel])
    fig.update_layout(title=title, barmode="group", template="plotly_white", xaxis_title="self-attention mask",
                      yaxis_title="step time (s)")
    return fig
