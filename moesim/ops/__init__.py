"""Operator-level compute model: a layer's work as a list of operators, each priced from the profile.

`moesim.ops.layer.LayerOps` lists the operators of one layer class and pass (forward, dgrad, wgrad)
with their shapes and dtypes; `moesim.ops.price` prices a list over arrays of candidates from the
hardware profile's per-operator efficiency tables (`moesim.ops.tables`), falling back to the profile's
FLOP-keyed matmul table. The analytical estimate (moesim.estimate.terms) and the simulator
(moesim.des.costs, through the estimate's parts) price this one list.
"""

from moesim.ops.base import Op, PARTS
from moesim.ops.price import op_time_s, ops_time_by_part

__all__ = ["Op", "PARTS", "op_time_s", "ops_time_by_part"]
