"""The harness's operator list (moesim/calibrate/harness_ops.py) is what validate/switch_layer.py executes:
its ATen call count per phase equals the calls a TorchDispatchMode counts on the real layer, forward and
autograd backward, over experts per rank, top-k and normalised gates; and the CPU clock (validate/timing.py)
leaves collectives out of the phases it times by CPU."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calibrate_synth import layer_record_dict  # noqa: E402

from moesim.calibrate.harness_ops import a2a_calling_thread_ops, harness_ops  # noqa: E402
from moesim.calibrate.predict import CollectiveTerm, layer_terms, layer_total_terms  # noqa: E402
from moesim.calibrate.records import layer_record  # noqa: E402
from moesim.errors import SpecError  # noqa: E402

CASES = [c for c in itertools.product((1, 2, 4), (1, 2), (False, True)) if c[0] >= c[1]]  # world 1: E = e >= k


@pytest.fixture(scope="module")
def world_of_one(tmp_path_factory):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    init = tmp_path_factory.mktemp("rdzv") / "init"
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _count_calls(cfg) -> Counter:
    """ATen calls per phase of one forward+backward of the harness layer (world size 1)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from validate import data
    from validate.comm import parallel_groups
    from validate.switch_layer import SwitchMoELayer

    counts: Counter = Counter()
    where = {"phase": None}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[where["phase"]] += 1
            return func(*args, **(kwargs or {}))

    class Timer:
        current = None

        @contextlib.contextmanager
        def phase(self, name, sync=None):
            where["phase"] = name
            yield

    layer = SwitchMoELayer(cfg, parallel_groups(1), torch.device("cpu"))
    x = data.tokens(cfg, 0).requires_grad_()
    with Count():
        out, aux = layer(x, Timer())
        where["phase"] = "backward"
        torch.autograd.backward([out, aux], [torch.ones_like(out), torch.ones_like(aux)])
    return counts, layer.last_stats


@pytest.mark.parametrize("experts, top_k, normalize", CASES)
def test_operator_calls_equal_the_calls_the_harness_makes(world_of_one, experts, top_k, normalize):
    from validate.config import LayerConfig

    cfg = LayerConfig(name="c", tokens_per_rank=64, d_model=16, d_ff=32, experts_per_rank=experts, world_size=1,
                      top_k=top_k, normalize_gates=normalize, capacity_factor=2.0)
    counts, stats = _count_calls(cfg)
    rec = layer_record(layer_record_dict(tokens=64, d_model=16, d_ff=32, experts_per_rank=experts, top_k=top_k,
                                         world=1, ep=1, normalize_gates=normalize), "synthetic:1")
    ops = harness_ops(rec)
    for phase in ("router_matmul", "router_gating", "dispatch_permute", "expert_compute", "combine_unpermute",
                  "backward"):
        modelled = sum(float(np.asarray(op.kernels).reshape(-1)[0]) for op in ops[phase])
        assert modelled == counts[phase], (phase, modelled, counts[phase])
    calling = a2a_calling_thread_ops(rec)
    assert sum(op.kernels for op in calling["dispatch_a2a"]) == counts["dispatch_a2a"]
    assert sum(op.kernels for op in calling["combine_a2a"]) == counts["combine_a2a"]


def test_cpu_clock_records_leave_collectives_out_of_backward_and_layer(tmp_path):
    from moesim.specs.hardware import OpTable
    from moesim.specs.load import load_hardware

    prior = load_hardware("cpu-localhost")
    tables = (OpTable(kind="gemm", dtype="float32", points=((64.0, 64.0, 64.0, 0.2), (1024.0, 1024.0, 1024.0, 0.8)),
                      measured_on="test", source="test"),)
    hw = dataclasses.replace(prior, efficiency=dataclasses.replace(prior.efficiency, op_tables=tables))
    body = layer_record_dict(tokens=512, d_model=128, d_ff=512)
    wall = layer_record(body, "synthetic:1")
    cpu = layer_record({**body, "clock": "cpu"}, "synthetic:2")
    assert cpu.clock == "cpu" and wall.clock == "wall"
    for rec, collectives in ((wall, True), (cpu, False)):
        terms = layer_terms(rec, hw)
        assert any(isinstance(t, CollectiveTerm) for t in terms["backward"]) is collectives
        assert any(isinstance(t, CollectiveTerm) for t in layer_total_terms(rec, terms)) is collectives
        assert any(isinstance(t, CollectiveTerm) for t in terms["dispatch_a2a"])  # that phase stays wall-clock
    with pytest.raises(SpecError, match="clock"):
        layer_record({**body, "clock": "sundial"}, "synthetic:3")


def test_phase_timer_cpu_clock_counts_work_not_waiting():
    from validate.timing import PhaseTimer

    timer = PhaseTimer(torch.device("cpu"), sync_phases=False, clock="cpu")
    with timer.phase("expert_compute"):
        time.sleep(0.05)  # waiting: no CPU time
    with timer.phase("dispatch_a2a"):  # a collective phase: wall clock under every clock
        time.sleep(0.05)
    d = timer.durations_s()
    assert d["expert_compute"] < 0.01 and d["dispatch_a2a"] >= 0.05
    assert timer.clock_of("expert_compute") == "cpu" and timer.clock_of("dispatch_a2a") == "wall"
    with pytest.raises(ValueError, match="clock"):
        PhaseTimer(torch.device("cpu"), sync_phases=False, clock="sundial")
