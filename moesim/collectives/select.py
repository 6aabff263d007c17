"""The collective model moesim uses by default for a hardware profile."""

from __future__ import annotations

from moesim.collectives.base import CollectiveModel
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.hardware import HardwareProfile


def default_model(hardware: HardwareProfile) -> CollectiveModel:
    """The topology-aware model: groups placed on the torus slice or switch tiers of `hardware`,
    the fastest (algorithm, protocol) per call (see topo_model.py)."""
    return TopologyModel(hardware)


def model_for(scenario) -> CollectiveModel:
    """The default model for `scenario`'s hardware, its expert all-to-all priced by the scenario's dispatch
    backend (training.dispatch_backend) and node-limited routing (moe.max_nodes_per_token): dispatch.py.
    With the default backend "nccl" this is default_model itself."""
    version = getattr(scenario, "nccl_version", "")  # [system] nccl_version: NCCL's constants at that release
    base = TopologyModel(scenario.hardware, nccl_version=version) if version else default_model(scenario.hardware)
    backend = scenario.training.dispatch_backend
    moe = scenario.model.moe
    if backend == "nccl" or moe is None:
        return base
    from moesim.collectives.dispatch import DispatchModel
    from moesim.errors import SpecError

    if backend in ("deepep", "deepep_ll", "hybridep") and scenario.hardware.device_kind != "gpu":
        raise SpecError(f"dispatch backend '{backend}' runs on GPUs (NVLink + RDMA); {scenario.hardware.name} has "
                        f"{scenario.hardware.device_kind} devices", file=scenario.file or None,
                        field="training.dispatch_backend", value=backend,
                        allowed=("nccl", "pairwise", "hierarchical"))
    if backend == "hybridep" and scenario.training.dtype_for("dispatch") == "float8":
        # Megatron-LM megatron/core/transformer/moe/fused_a2a.py init_hybrid_ep_buffer: "HybridEP dispatcher does not
        # support fp8 dispatch now"
        raise SpecError("dispatch backend 'hybridep' dispatches BF16 (Megatron-Core asserts it); this precision "
                        f"recipe dispatches {scenario.training.dtype_for('dispatch')}", file=scenario.file or None,
                        field="training.dispatch_backend", value=backend,
                        allowed=("nccl", "pairwise", "hierarchical", "deepep", "deepep_ll"))
    tokens = tuple(scenario.model.d_model * scenario.training.element_bytes(which) for which in ("dispatch", "combine"))
    return DispatchModel(base, backend, moe.num_experts, moe.top_k, moe.max_nodes_per_token, tokens)
