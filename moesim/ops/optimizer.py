"""The optimizer step as memory-bound operators (Megatron-LM's mixed-precision step with fp32 main gradients).

Per device, over its parameters (arrays broadcast over candidates and stages):
  zero_grad_buffer  write the gradient buffer of every local parameter (the buffer is sharded only at ZeRO ≥ 2):
                    q_g · P_buffer (Megatron-LM core/distributed/param_and_grad_buffer.py, reset() each step)
  grad_norm         read the main gradients of the optimizer's shard once for the global norm:
                    q_g · P_local (core/optimizer/clip_grads.py get_grad_norm_fp32, multi_tensor_l2norm)
  optimizer_update  read the gradient, read and write every state (Adam's m and v, the fp32 master copy):
                    (q_g + 2·K) · P_local, K the optimizer bytes per parameter (ZeRO §3.1; moesim.memory)
  param_copy        the updated master copy to the model's parameters: read the master, write the
                    parameter, (q_master + q_p) · P_local (core/optimizer/optimizer.py,
                    _copy_main_params_to_model_params); without a master copy the update writes the parameter
                    in place and this is q_p · P_local, the write the update's state bytes do not count
Before the data-parallel reduction, Megatron-LM DDP passes over every gradient buffer of the device (GPU only;
core/distributed/param_and_grad_buffer.py _ParamAndGradBucketGroup.start_grad_sync, at 23e00ed0, the commit of the
published B200 runs):
  grad_nan_check    check_grads: bucket.grad_data.norm(p=2), one read, q_g · P_buffer (training.grad_nan_check)
  grad_prescale     bucket.grad_data *= gradient_scaling_factor, 1/(dp·cp) for dense and expert buffers alike
                    unless the collective averages (distributed_data_parallel.py __init__): 2 · q_g · P_buffer
                    when dp·cp > 1 and not training.grad_average_in_collective
They run on the compute stream once per step, after the last backward when the reduction is not overlapped, so
they are priced with the step's end here. XLA programs fuse them into the reduction: none on TPUs.
Gradient clipping's scale pass (read + write of the main gradients) runs only when the norm exceeds the
threshold (clip_grad_by_total_norm_fp32 applies clip_coeff < 1), so it is not priced.
Each operator is priced like every memory-bound operator (moesim.ops.price: the profile's memory table or
efficiency.memory_bandwidth, plus its kernel launches).
"""

from __future__ import annotations

import numpy as np

from moesim.memory import optimizer_state_bytes_per_param
from moesim.ops.base import Op, memory
from moesim.ops.price import op_time_s
from moesim.specs.hardware import HardwareProfile
from moesim.specs.training import TrainingSpec

PART = "optimizer"


def optimizer_step_ops(training: TrainingSpec, model_d_model: int, model_d_ff: int, local_params,
                       buffer_params, dp_cp=1, device_kind: str = "gpu") -> list[Op]:
    """The step's memory-bound operators for `local_params` in the optimizer's shard and `buffer_params`
    in the device's gradient buffer, `dp_cp` the dense gradients' reduction group (module docstring)."""
    q_g, q_p = training.bytes_of("grad"), training.bytes_of("param")
    k = optimizer_state_bytes_per_param(training, model_d_model, model_d_ff)
    has_master = training.dtype_for("master") != training.param_dtype
    q_master = training.bytes_of("master") if has_master else 0.0
    local, buffer = np.asarray(local_params, dtype=float), np.asarray(buffer_params, dtype=float)
    ops = [memory(PART, "zero_grad_buffer", "float32", q_g * buffer),
           memory(PART, "grad_norm", "float32", q_g * local),
           memory(PART, "optimizer_update", "float32", (q_g + 2 * k) * local),
           memory(PART, "param_copy", "float32", (q_master + q_p) * local)]
    if device_kind != "gpu":
        return ops
    if training.grad_nan_check:  # param_and_grad_buffer.py check_grads: grad_data.norm(p=2)
        ops.append(memory(PART, "grad_nan_check", "float32", q_g * buffer))
    if not training.grad_average_in_collective:  # start_grad_sync: grad_data *= 1/(dp·cp), where that is not 1
        prescaled = np.where(np.asarray(dp_cp, dtype=float) > 1, 2 * q_g, 0.0)
        if np.ndim(prescaled) == 1 and np.ndim(buffer) == 2:
            prescaled = prescaled[:, None]
        ops.append(memory(PART, "grad_prescale", "float32", prescaled * buffer))
    return ops


def ops_total_time_s(ops: list[Op], hw: HardwareProfile) -> np.ndarray:
    """Σ op_time_s over `ops` whose byte arrays may be 2-D (candidates × stages): priced flat, reshaped back."""
    total = 0.0
    for op in ops:
        nbytes = np.asarray(op.bytes, dtype=float)
        flat = memory(op.part, op.name, op.dtype, nbytes.reshape(-1), kernels=op.kernels)
        t = np.asarray(op_time_s(flat, hw), dtype=float)
        total = total + np.where(nbytes.reshape(-1) > 0, t, 0.0).reshape(nbytes.shape)
    return total


__all__ = ["PART", "ops_total_time_s", "optimizer_step_ops"]
