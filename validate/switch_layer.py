"""The distributed Switch Transformer MoE layer (expert parallel over ``ep``, replicated over ``dp``).

Per rank, forward:

1. ``router``            ``router_matmul`` (the fp32 router matmul x·W_r) then ``router_gating`` (softmax,
                         top-k, aux loss, capacity positions and dropping); ``router`` is their sum
2. ``dispatch_permute``  gather the kept tokens, grouped by expert (hence by destination rank)
3. ``dispatch_a2a``      exchange per-expert counts (even ``all_to_all_single``), then the tokens
                         (uneven ``all_to_all_single``; only kept tokens travel, no capacity padding)
4. ``expert_compute``    regroup received rows by local expert, ReLU FFN per expert, restore order
5. ``combine_a2a``       reverse uneven all-to-all back to the source ranks
6. ``combine_unpermute`` scale by the gate and scatter-add into token order (dropped tokens get 0)

Backward is autograd through the same graph (:class:`validate.comm.AllToAllSingle` does the reverse
exchanges). :meth:`SwitchMoELayer.sync_gradients` then all-reduces router gradients over the world
and expert gradients over the data-parallel group of expert replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from validate import data
from validate.comm import ParallelGroups, all_to_all
from validate.config import DTYPE_BYTES, LayerConfig
from validate.routing import gate_logits, router_logits
from validate.timing import NullTimer

FORWARD_PHASES = ("router", "dispatch_permute", "dispatch_a2a", "expert_compute", "combine_a2a",
                  "combine_unpermute")
# The router phase is timed in two parts; on each rank "router" = their sum (its record name is kept
# for readers of older records).
ROUTER_PARTS = ("router_matmul", "router_gating")


@dataclass(frozen=True)
class DispatchStats:
    """What one forward sent and received on this rank (host integers)."""

    assignments: int             # T * k token-expert assignments on this rank
    kept: int                    # assignments within capacity (= rows sent in dispatch)
    sent_rows_remote: int        # rows sent to other ranks (excludes the slice kept locally)
    received_rows: int           # rows this rank's experts processed
    dispatch_bytes: int          # kept * d_model * element size (whole send buffer)
    dispatch_remote_bytes: int   # sent_rows_remote * d_model * element size
    count_bytes: int             # bytes of the per-expert count exchange (E int64)
    expert_flops_forward: int    # 2 matmuls * 2 * rows * d_model * d_ff


def expert_ffn(x: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """Switch/T5 expert FFN without biases: ReLU(x W_in) W_out (Switch §5, Fig. 9 FFN)."""
    return torch.relu(x @ w_in) @ w_out


class SwitchMoELayer(nn.Module):
    """One Switch MoE layer on this rank: the fp32 router (replicated) and ``experts_per_rank``
    local experts (global ids ``ep_rank*experts_per_rank + j``), weights from :mod:`validate.data`.
    """

    def __init__(self, cfg: LayerConfig, groups: ParallelGroups, device: torch.device):
        super().__init__()
        if groups.ep != cfg.ep or groups.dp != cfg.dp:
            raise ValueError(f"config {cfg.name!r} needs ep={cfg.ep}, dp={cfg.dp}; "
                             f"groups are ep={groups.ep}, dp={groups.dp}")
        self.cfg, self.groups = cfg, groups
        dtype = data.TORCH_DTYPES[cfg.dtype]
        self.w_router = nn.Parameter(data.router_weight(cfg).to(device))  # stays float32
        first = groups.ep_rank * cfg.experts_per_rank
        ws = [data.expert_weights(cfg, first + j) for j in range(cfg.experts_per_rank)]
        self.w_in = nn.Parameter(torch.stack([w for w, _ in ws]).to(device, dtype))
        self.w_out = nn.Parameter(torch.stack([w for _, w in ws]).to(device, dtype))
        self.capacity = cfg.capacity
        self.last_stats: DispatchStats | None = None

    def forward(self, x: torch.Tensor, timer=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (output [T, d_model] in the layer dtype, this rank's aux loss [] float32)."""
        cfg, g = self.cfg, self.groups
        timer = timer or NullTimer()
        ep, epr = g.ep, cfg.experts_per_rank
        with timer.phase("router_matmul"):
            logits = router_logits(x, self.w_router)
        with timer.phase("router_gating"):
            r = gate_logits(logits, cfg.top_k, self.capacity, cfg.normalize_gates, cfg.aux_loss_coef)
        with timer.phase("dispatch_permute"):
            send = x[r.token_index]                      # [kept, d], grouped by destination
        with timer.phase("dispatch_a2a"):
            recv_counts = torch.empty_like(r.expert_counts)
            dist.all_to_all_single(recv_counts, r.expert_counts, group=g.ep_group)  # E/ep each
            send_splits = r.expert_counts.view(ep, epr).sum(dim=1).tolist()
            recv_matrix = recv_counts.view(ep, epr)     # [source rank, local expert]
            recv_splits = recv_matrix.sum(dim=1).tolist()
            received = all_to_all(send, recv_splits, send_splits, g.ep_group)
        with timer.phase("expert_compute"):
            y = self._experts(received, recv_matrix)
        with timer.phase("combine_a2a"):
            back = all_to_all(y, send_splits, recv_splits, g.ep_group)
        with timer.phase("combine_unpermute"):
            weighted = back * r.gate.to(back.dtype).unsqueeze(1)   # Switch Eq. 2: y = p_i(x) E_i(x)
            out = torch.zeros_like(x).index_add(0, r.token_index, weighted)
        elem = DTYPE_BYTES[cfg.dtype]
        remote = r.num_kept - send_splits[g.ep_rank]
        rows = int(received.shape[0])
        self.last_stats = DispatchStats(
            assignments=r.num_assignments,
            kept=r.num_kept,
            sent_rows_remote=remote,
            received_rows=rows,
            dispatch_bytes=r.num_kept * cfg.d_model * elem,
            dispatch_remote_bytes=remote * cfg.d_model * elem,
            count_bytes=cfg.num_experts * 8,
            expert_flops_forward=2 * 2 * rows * cfg.d_model * cfg.d_ff,  # 2 FLOP/MAC x 2 matmuls
        )
        return out, r.aux_loss

    def _experts(self, received: torch.Tensor, recv_matrix: torch.Tensor) -> torch.Tensor:
        """Apply local expert j to the rows addressed to it; rows arrive [source][expert]."""
        epr = self.cfg.experts_per_rank
        if epr == 1:
            return expert_ffn(received, self.w_in[0], self.w_out[0])
        ep = self.groups.ep
        total = int(received.shape[0])
        counts = recv_matrix.reshape(-1)                                 # segment (s, j) sizes
        seg = torch.repeat_interleave(torch.arange(ep * epr, device=counts.device), counts,
                                      output_size=total)
        key = (seg % epr) * ep + seg // epr                              # expert-major order
        order = torch.argsort(key, stable=True)
        per_expert = recv_matrix.sum(dim=0).tolist()
        chunks = received[order].split(per_expert)
        y_sorted = torch.cat([expert_ffn(c, self.w_in[j], self.w_out[j])
                              for j, c in enumerate(chunks)])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(total, device=order.device)
        return y_sorted[inverse]

    def sync_gradients(self) -> None:
        """Data-parallel gradient averaging for a loss that is the mean over ranks.

        Router: replicated on all ranks -> all-reduce over the world, / world (DDP convention).
        Experts: the backward all-to-all already summed the gradient over the ep group's source
        ranks; replicas in the dp group are all-reduced and the sum divided by world (not dp), so
        both equal d(mean_r loss_r)/dW.
        """
        world = dist.get_world_size()
        for p in self.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        dist.all_reduce(self.w_router.grad)
        self.w_router.grad.div_(world)
        for p in (self.w_in, self.w_out):
            if self.groups.dp > 1:
                dist.all_reduce(p.grad, group=self.groups.dp_group)
            p.grad.div_(world)
