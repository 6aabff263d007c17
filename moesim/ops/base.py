"""The operator: one kernel kind with its shape, dtype and work, over an array of candidates.

Every array is (N,) over candidates (or a scalar broadcast to them), per device per micro-batch.
Work conventions (what the kernel executes, which is what its time is priced on):
  gemm          flops = 2·m·n·k per kernel × count (Kaplan et al. 2020 §2.1: 2 FLOP per MAC); the
                forward is C[m, n] = A[m, k]·B[k, n] with m tokens, k inputs, n outputs; dgrad is the
                [m, n]·[n, k] product (m, k, n); wgrad the [k, m]·[m, n] product (k, n, m), accumulating
                (SimuMax base_struct.py: fprop TN, dgrad NN, wgrad NT)
  grouped_gemm  `groups` GEMMs of m tokens each (one expert each), same three passes
  attention     fused (flash) attention; forward 4·s_q·s_kv·d per head × the mask's computed fraction,
                backward 2.5 × forward (five matmuls against two, recomputing the scores: Dao 2023,
                arXiv 2307.08691 §3.2; Shah et al. 2024, arXiv 2407.08608 §4.1 benchmark convention)
  memory        bytes moved through HBM (every read and write counted)
  host          a fixed time (the profile's per-layer host overhead)
`kernels` launches are each charged the profile's `efficiency.kernel_launch_us`, or `launches` of them where set (an
operator inside a captured CUDA graph: moesim.ops.graphs).
`fallback_kernel_flops` is the size the FLOP-keyed matmul table is read at when the profile has no
table for the operator (the estimate's convention before operator tables: one kernel's FLOP).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Stage parts of a layer, in execution order (the keys of ClassTerms.fwd_parts_s / bwd_parts_s).
PARTS = ("layer_overhead", "attention", "dense_ffn", "router", "permute", "expert_ffn", "unpermute",
         "shared_experts", "optimizer")  # optimizer: the step's operators, once per step (moesim/ops/optimizer.py)
PASSES = ("fwd", "dgrad", "wgrad", "bwd")
KINDS = ("gemm", "grouped_gemm", "attention", "memory", "host")
ATTENTION_BACKWARD_TO_FORWARD = 2.5  # flash backward: 5 matmul-equivalents against 2 (module docstring)


@dataclass(frozen=True)
class Op:
    """One operator of a layer pass (see the module docstring for the shape and work conventions)."""

    part: str
    name: str
    kind: str
    pass_: str
    dtype: str
    flops: np.ndarray | float = 0.0  # total over `count` kernels (compute kinds)
    bytes: np.ndarray | float = 0.0  # total moved (memory kind)
    shape: tuple = ()  # coordinates in OP_DIMS[kind] order (specs/efficiency.py), arrays or scalars
    kernels: np.ndarray | float = 1.0
    fallback_kernel_flops: np.ndarray | float | None = None
    time_s: np.ndarray | float = 0.0  # host kind only
    mask: str = "full"  # attention only
    launches: np.ndarray | float | None = None  # launches charged (None: `kernels`; CUDA graphs: moesim.ops.graphs)
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown operator kind {self.kind!r}")
        if self.pass_ not in PASSES:
            raise ValueError(f"unknown pass {self.pass_!r}")
        if self.part not in PARTS:
            raise ValueError(f"unknown part {self.part!r}")

    def scaled(self, factor) -> "Op":
        """The same operator doing `factor` times the work (repeated kernels)."""
        fb = self.fallback_kernel_flops
        return replace(self, flops=self.flops * factor, bytes=self.bytes * factor, kernels=self.kernels * factor,
                       time_s=self.time_s * factor, fallback_kernel_flops=fb,
                       launches=None if self.launches is None else self.launches * factor)

    @property
    def launch_count(self) -> np.ndarray | float:
        """Kernel launches the operator is charged (module docstring)."""
        return self.kernels if self.launches is None else self.launches


def gemm(part: str, name: str, dtype: str, m, n, k, *, count=1.0, fallback=None, pass_: str = "fwd") -> Op:
    """A (batch of `count`) GEMM C[m, n] = A[m, k]·B[k, n]."""
    flops = 2.0 * m * n * k * count
    return Op(part, name, "gemm", pass_, dtype, flops=flops, shape=(m, n, k), kernels=count,
              fallback_kernel_flops=2.0 * m * n * k if fallback is None else fallback)


def grouped_gemm(part: str, name: str, dtype: str, groups, m, n, k, *, fallback=None, pass_: str = "fwd") -> Op:
    """`groups` GEMMs of [m, k]·[k, n] in one grouped kernel."""
    flops = 2.0 * groups * m * n * k
    return Op(part, name, "grouped_gemm", pass_, dtype, flops=flops, shape=(groups, m, n, k), kernels=1.0,
              fallback_kernel_flops=2.0 * m * n * k if fallback is None else fallback)


def memory(part: str, name: str, dtype: str, nbytes, *, kernels=1.0, pass_: str = "fwd") -> Op:
    """A memory-bound operator moving `nbytes`."""
    return Op(part, name, "memory", pass_, dtype, bytes=nbytes, shape=(np.maximum(nbytes, 1.0),), kernels=kernels)


def backward(op: Op) -> list[Op]:
    """The backward operators of a forward operator: dgrad and wgrad of a GEMM (wgrad only when the
    operator has weights: meta['weights']; dgrad only when its input needs a gradient: meta['dgrad']),
    the flash backward of attention, and for a memory op the bytes of its backward
    (meta['bwd_bytes_factor'] × forward, in meta['bwd_kernels'] launches where set, else the forward's; named
    meta['bwd_name'] where set), preceded by `grad_accumulate` where meta['grad_add_kernels'] is set (the sums of
    the op's output gradients arriving from several consumers: meta['grad_add_bytes']). A GEMM's dgrad and wgrad run
    in meta['bwd_dtype'] where set, else the forward's dtype (Megatron-Core's router, moesim/ops/layer.py `router`)."""
    if op.kind in ("gemm", "grouped_gemm"):
        out = []
        dtype = op.meta.get("bwd_dtype", op.dtype)
        if op.kind == "gemm":
            m, n, k = op.shape
            dgrad_shape, wgrad_shape = (m, k, n), (k, n, m)
        else:
            g, m, n, k = op.shape
            dgrad_shape, wgrad_shape = (g, m, k, n), (g, k, n, m)
        if op.meta.get("dgrad", True):
            out.append(replace(op, pass_="dgrad", shape=dgrad_shape, dtype=dtype))
        if op.meta.get("weights", True):
            out.append(replace(op, pass_="wgrad", shape=wgrad_shape, dtype=dtype))
        return out
    if op.kind == "attention":
        return [replace(op, pass_="bwd", flops=op.flops * ATTENTION_BACKWARD_TO_FORWARD,
                        fallback_kernel_flops=op.fallback_kernel_flops)]
    if op.kind == "memory":
        # the sums of the output's gradients from its several consumers run before the op's own backward
        out = [grad_accumulate(op.part, op.dtype, op.meta["grad_add_bytes"], op.meta["grad_add_kernels"])
               ] if op.meta.get("grad_add_kernels") else []
        factor = op.meta.get("bwd_bytes_factor", 1.0)
        if not factor:
            return out
        nbytes = op.bytes * factor
        kernels = op.meta.get("bwd_kernels", op.kernels)  # an implementation's own backward count (ops/mcore_moe.py)
        name = op.meta.get("bwd_name", op.name)  # a backward that is another kernel than the forward's (layer.py)
        return out + [replace(op, name=name, pass_="bwd", bytes=nbytes, shape=(np.maximum(nbytes, 1.0),),
                              kernels=kernels)]
    return [replace(op, pass_="bwd")]


GRAD_ACCUMULATE = "grad_accumulate"


def grad_accumulate(part: str, dtype: str, nbytes, kernels) -> Op:
    """Autograd's sum of a tensor's incoming gradients, a backward-only memory operator: each gradient after the
    first is added to the buffer with one add kernel, two reads and one write of the tensor (PyTorch
    torch/csrc/autograd/input_buffer.cpp `accumulate`: dense + dense is `old_var + var`)."""
    return memory(part, GRAD_ACCUMULATE, dtype, nbytes, kernels=kernels, pass_="bwd")
