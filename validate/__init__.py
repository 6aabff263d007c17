"""Measurement harness: a real ``torch.distributed`` Switch Transformer MoE layer.

The package builds a Switch/GShard-style Mixture-of-Experts layer (fp32 router, top-k gating,
per-source-rank expert capacity, position-based token dropping, load-balancing aux loss,
expert parallelism with ``all_to_all_single`` dispatch/combine, data-parallel expert replicas)
and times it phase by phase so moesim's cost models can be checked against measurements.

Modules (only this package imports torch):

- :mod:`validate.config`       -- frozen dataclasses for sweep entries and the TOML sweep parser
- :mod:`validate.routing`      -- router, capacity rule, top-k gating, dropping, aux loss
- :mod:`validate.comm`         -- process groups, backend/device detection, differentiable all-to-all
- :mod:`validate.switch_layer` -- the distributed layer (forward, backward, gradient sync)
- :mod:`validate.reference`    -- single-process dense (Mesh-TensorFlow einsum) reference
- :mod:`validate.timing`       -- phase timers, synchronisation, order statistics
- :mod:`validate.bench`        -- layer benchmark producing ``"kind": "switch_layer"`` records
- :mod:`validate.collectives`  -- collective micro-benchmarks (``"kind": "collective"`` records)
- :mod:`validate.records`      -- JSONL output (flush+fsync), resume keys, environment info
- :mod:`validate.selfcheck`    -- distributed-vs-reference correctness check (used by the tests)
- :mod:`validate.run`          -- ``torchrun ... -m validate.run`` entry point

Importing :mod:`validate` itself does not import torch.
"""

SCHEMA_VERSION = 1
"""Version of the JSONL record layout written by :mod:`validate.run`."""

__all__ = ["SCHEMA_VERSION"]
