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
                       buffer_params) -> list[Op]:
    """The step's memory-bound operators for `local_params` in the optimizer's shard and `buffer_params`
    in the device's gradient buffer (module docstring)."""
    q_g, q_p = training.bytes_of("grad"), training.bytes_of("param")
    k = optimizer_state_bytes_per_param(training, model_d_model, model_d_ff)
    has_master = training.dtype_for("master") != training.param_dtype
    q_master = training.bytes_of("master") if has_master else 0.0
    local = np.asarray(local_params, dtype=float)
    return [memory(PART, "zero_grad_buffer", "float32", q_g * np.asarray(buffer_params, dtype=float)),
            memory(PART, "grad_norm", "float32", q_g * local),
            memory(PART, "optimizer_update", "float32", (q_g + 2 * k) * local),
            memory(PART, "param_copy", "float32", (q_master + q_p) * local)]


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
