"""Check the distributed layer against the single-process reference on the same weights and tokens.

Every rank runs the distributed forward/backward/gradient sync, recomputes the reference for all
ranks' tokens on its CPU, and compares its own slice: outputs, aux loss, input gradients, router
gradients and the gradients of its local experts. Run under torchrun (works with NCCL too)::

    torchrun --standalone --nproc-per-node 4 -m validate.selfcheck

or from Python via :func:`spawn_check` (torch.multiprocessing, file:// rendezvous, no ports).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from validate import data
from validate.comm import init_distributed, parallel_groups, reset_group_cache, select_backend_device
from validate.config import LayerConfig
from validate.reference import full_weights, reference_forward
from validate.switch_layer import SwitchMoELayer

FLOAT32_TOL = 1e-5
BFLOAT16_TOL = 3e-2


@dataclass(frozen=True)
class CheckCase:
    """A layer config to check; ``expect_drops`` says whether capacity must (not) drop tokens."""

    cfg: LayerConfig
    expect_drops: bool
    rel_tol: float = FLOAT32_TOL


def default_cases(world: int) -> list[CheckCase]:
    """Top-1 and top-2, with and without drops, several ep x dp layouts for this world size."""
    eps = sorted({world, max(1, world // 2)}, reverse=True)
    base = LayerConfig(name="check", tokens_per_rank=48, d_model=16, d_ff=24, experts_per_rank=2,
                       world_size=world, warmup=0, repeats=1, seed=11)
    cases = []
    for ep in eps:
        b = replace(base, ep_size=ep)
        e = b.num_experts
        cases += [
            CheckCase(replace(b, name=f"top1-nodrop-ep{ep}", top_k=1, capacity_factor=float(e)), False),
            CheckCase(replace(b, name=f"top1-drop-ep{ep}", top_k=1, capacity_factor=0.5), True),
            CheckCase(replace(b, name=f"top2-nodrop-ep{ep}", top_k=2, capacity_factor=float(e),
                              normalize_gates=True), False),
            CheckCase(replace(b, name=f"top2-drop-ep{ep}", top_k=2, capacity_factor=0.6), True),
        ]
    b = replace(base, ep_size=world)
    cases += [
        CheckCase(replace(b, name="top1-drop-epr1", experts_per_rank=1, capacity_factor=0.5,
                          tokens_per_rank=40), True),
        CheckCase(replace(b, name="top2-drop-megatron", top_k=2, capacity_factor=0.6,
                          capacity_rule="megatron", experts_per_rank=3), True),
        CheckCase(replace(b, name="top2-drop-bf16", top_k=2, capacity_factor=0.75, dtype="bfloat16",
                          normalize_gates=True), True, BFLOAT16_TOL),
    ]
    return cases


def _err(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max |a-b|, max |b|) in float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max()) if a.numel() else 0.0, float(b.abs().max()) if b.numel() else 0.0


def check_case(case: CheckCase, device: torch.device) -> dict:
    """Run one case on this rank; return errors (max abs), scales and drop counts."""
    cfg = case.cfg
    rank, world = dist.get_rank(), dist.get_world_size()
    dtype = data.TORCH_DTYPES[cfg.dtype]
    groups = parallel_groups(cfg.ep)
    layer = SwitchMoELayer(cfg, groups, device)
    x = data.tokens(cfg, rank).to(device, dtype).requires_grad_()
    out, aux = layer(x)
    up = data.upstream_grad(cfg, rank).to(dtype)
    torch.autograd.backward([out, aux], [up.to(device), torch.ones_like(aux)])
    layer.sync_gradients()
    stats = layer.last_stats
    kept = torch.tensor([stats.kept, stats.assignments], dtype=torch.float64, device=device)
    dist.all_reduce(kept)

    xs = [data.tokens(cfg, r).to(dtype).requires_grad_() for r in range(world)]
    wr, wi, wo = full_weights(cfg)
    wr.requires_grad_()
    wi = wi.to(dtype).requires_grad_()
    wo = wo.to(dtype).requires_grad_()
    ref = reference_forward(xs, wr, wi, wo, cfg)
    loss = sum((o.float() * data.upstream_grad(cfg, r).to(dtype).float()).sum() + a
               for r, (o, a) in enumerate(zip(ref.outputs, ref.aux_losses)))
    loss.backward()  # reference loss = sum over ranks; distributed grads are means -> / world
    local = slice(groups.ep_rank * cfg.experts_per_rank, (groups.ep_rank + 1) * cfg.experts_per_rank)
    pairs = {
        "output": (out, ref.outputs[rank]),
        "aux_loss": (aux, ref.aux_losses[rank]),
        "input_grad": (x.grad, xs[rank].grad),
        "router_grad": (layer.w_router.grad, wr.grad / world),
        "w_in_grad": (layer.w_in.grad, wi.grad[local] / world),
        "w_out_grad": (layer.w_out.grad, wo.grad[local] / world),
    }
    errors, scales = {}, {}
    for key, (a, b) in pairs.items():
        errors[key], scales[key] = _err(a, b)
    return {
        "name": cfg.name, "config": asdict(cfg), "rank": rank, "rel_tol": case.rel_tol,
        "expect_drops": case.expect_drops, "errors": errors, "scales": scales,
        "kept_total": int(kept[0]), "assignments_total": int(kept[1]),
        "ref_kept_total": sum(ref.kept), "capacity": cfg.capacity,
    }


def failures(result: dict) -> list[str]:
    """Human-readable problems in one :func:`check_case` result (empty when it passes)."""
    bad = []
    for key, err in result["errors"].items():
        limit = result["rel_tol"] * max(1.0, result["scales"][key])
        if not err <= limit:
            bad.append(f"{result['name']} rank {result['rank']}: {key} max abs err {err:.3g} > {limit:.3g}")
    if result["kept_total"] != result["ref_kept_total"]:
        bad.append(f"{result['name']}: kept {result['kept_total']} != reference {result['ref_kept_total']}")
    dropped = result["assignments_total"] - result["kept_total"]
    if result["expect_drops"] != (dropped > 0):
        bad.append(f"{result['name']}: expected drops={result['expect_drops']}, dropped {dropped}")
    return bad


def run_cases(cases: list[CheckCase], device: torch.device) -> list[dict]:
    """Run all cases on this rank (all ranks must call this with the same cases)."""
    return [check_case(c, device) for c in cases]


def _spawn_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    device = init_distributed("gloo", "cpu", 60.0, f"file://{init_file}", rank, world)
    try:
        results = run_cases(default_cases(world), device)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        reset_group_cache()
        dist.destroy_process_group()


def spawn_check(world: int, out_dir: str) -> list[dict]:
    """Run :func:`default_cases` on ``world`` local gloo processes; return all ranks' results."""
    with tempfile.NamedTemporaryFile(dir=out_dir, prefix="rdzv-", delete=True) as f:
        init_file = f.name
    mp.spawn(_spawn_worker, args=(world, init_file, out_dir), nprocs=world, join=True)
    results = []
    for r in range(world):
        results.extend(json.loads(Path(out_dir, f"rank{r}.json").read_text()))
    return results


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: run the default cases, print one line per case, exit 1 on failure."""
    ap = argparse.ArgumentParser(prog="python -m validate.selfcheck", description=__doc__)
    ap.add_argument("--backend", choices=["gloo", "nccl"])
    ap.add_argument("--device", choices=["cpu", "cuda"])
    ap.add_argument("--timeout-s", type=float, default=120.0)
    args = ap.parse_args(argv)
    backend, dev = select_backend_device(args.backend, args.device)
    if dev == "cpu":
        torch.set_num_threads(1)
    device = init_distributed(backend, dev, args.timeout_s)
    rank = dist.get_rank()
    try:
        results = run_cases(default_cases(dist.get_world_size()), device)
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, results)
    finally:
        reset_group_cache()
        dist.destroy_process_group()
    if rank != 0:
        return 0
    bad = [m for rank_results in gathered for r in rank_results for m in failures(r)]
    for r in gathered[0]:
        worst = max(e / max(1.0, r["scales"][k]) for k, e in r["errors"].items())
        print(f"{r['name']:28s} capacity={r['capacity']:3d} kept={r['kept_total']}/"
              f"{r['assignments_total']} worst_rel_err={worst:.2e}")
    print("FAIL:\n  " + "\n  ".join(bad) if bad else "selfcheck: all cases match the reference")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
