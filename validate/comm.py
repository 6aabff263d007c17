"""Process groups, backend/device selection and a differentiable uneven all-to-all."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

BACKENDS = ("gloo", "nccl")
DEVICES = ("cpu", "cuda")


def select_backend_device(backend: str | None, device: str | None) -> tuple[str, str]:
    """Auto-detect (``nccl``, ``cuda``) when CUDA GPUs are visible, else (``gloo``, ``cpu``).

    Explicit ``backend`` / ``device`` override the detection; ``nccl`` requires ``cuda``.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
    if device is not None and device not in DEVICES:
        raise ValueError(f"--device must be one of {list(DEVICES)}, got {device!r}")
    if device is None:
        device = "cuda" if backend != "gloo" and torch.cuda.is_available() else "cpu"
    if backend is None:
        backend = "nccl" if device == "cuda" else "gloo"
    if backend == "nccl" and device != "cuda":
        raise ValueError("--backend nccl needs --device cuda (NCCL only moves GPU tensors)")
    if backend == "gloo" and device != "cpu":
        raise ValueError("--backend gloo needs --device cpu (gloo has no CUDA all_to_all)")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch.cuda.is_available() is False")
    return backend, device


def init_distributed(backend: str, device: str, timeout_s: float, init_method: str = "env://",
                     rank: int | None = None, world_size: int | None = None) -> torch.device:
    """Initialise the default process group and return this rank's device.

    ``timeout`` bounds every collective: gloo raises ``RuntimeError`` ("Timed out waiting ... for
    recv") after it; NCCL's watchdog aborts the communicator after it (torch default
    ``TORCH_NCCL_ASYNC_ERROR_HANDLING``) and the process exits with an error.
    """
    if device == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", rank if rank is not None else 0))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    kwargs = {}
    if rank is not None:
        kwargs.update(rank=rank, world_size=world_size)
    if backend == "nccl":
        kwargs["device_id"] = dev
    dist.init_process_group(backend=backend, init_method=init_method,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return dev


@dataclass(frozen=True)
class ParallelGroups:
    """Expert-parallel and data-parallel groups for world = ep * dp.

    Ranks ``[d*ep, (d+1)*ep)`` form expert-parallel group ``d`` (one full set of E experts);
    ranks ``{j, j+ep, j+2ep, ...}`` hold the same experts and form data-parallel group ``j``.
    """

    ep: int
    dp: int
    ep_rank: int
    dp_rank: int
    ep_group: object
    dp_group: object


_GROUP_CACHE: dict[int, ParallelGroups] = {}


def parallel_groups(ep: int) -> ParallelGroups:
    """Create (collectively, on all ranks, once per ``ep``) the EP/DP groups; cached."""
    if ep in _GROUP_CACHE:
        return _GROUP_CACHE[ep]
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % ep:
        raise ValueError(f"ep_size={ep} must divide the world size {world}")
    dp = world // ep
    # gloo's new_group waits on the store without the collective timeout; a barrier first makes a
    # missing or hung peer fail after --timeout-s instead of blocking forever.
    dist.barrier()
    ep_group = dp_group = None
    for d in range(dp):  # every rank must take part in every new_group call, in the same order
        g = dist.new_group(list(range(d * ep, (d + 1) * ep)))
        if rank // ep == d:
            ep_group = g
    for j in range(ep if dp > 1 else 0):   # dp == 1: no replicas, no dp group needed
        g = dist.new_group(list(range(j, world, ep)))
        if rank % ep == j:
            dp_group = g
    groups = ParallelGroups(ep=ep, dp=dp, ep_rank=rank % ep, dp_rank=rank // ep,
                            ep_group=ep_group, dp_group=dp_group)
    _GROUP_CACHE[ep] = groups
    return groups


def reset_group_cache() -> None:
    """Forget cached groups (call before ``destroy_process_group``)."""
    _GROUP_CACHE.clear()


class AllToAllSingle(torch.autograd.Function):
    """``all_to_all_single`` with uneven row splits whose backward is the reverse exchange.

    Forward sends ``input_splits[j]`` rows to group rank j and receives ``output_splits[j]`` rows
    from it; the gradient of that is the same exchange with the splits swapped.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, output_splits: list[int], input_splits: list[int], group):
        ctx.output_splits, ctx.input_splits, ctx.group = output_splits, input_splits, group
        x = x.contiguous()
        out = x.new_empty((sum(output_splits),) + tuple(x.shape[1:]))
        dist.all_to_all_single(out, x, output_splits, input_splits, group=group)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_out = grad_out.contiguous()
        grad_in = grad_out.new_empty((sum(ctx.input_splits),) + tuple(grad_out.shape[1:]))
        dist.all_to_all_single(grad_in, grad_out, ctx.input_splits, ctx.output_splits,
                               group=ctx.group)
        return grad_in, None, None, None


def all_to_all(x: torch.Tensor, output_splits: list[int], input_splits: list[int], group) -> torch.Tensor:
    """Differentiable uneven all-to-all along dim 0 (see :class:`AllToAllSingle`)."""
    return AllToAllSingle.apply(x, output_splits, input_splits, group)


def gather_rows(values: list[float], device: torch.device, group=None) -> list[list[float]]:
    """Return every rank's ``values`` (float64 rows, rank order) via one SUM all-reduce."""
    world = dist.get_world_size(group)
    buf = torch.zeros(world, len(values), dtype=torch.float64, device=device)
    buf[dist.get_rank(group)] = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    return buf.cpu().tolist()
