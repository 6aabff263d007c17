"""Layout spec: the execution noun — how devices split the work.

Degrees (Megatron-Core MoE parallel folding, arXiv 2504.14960; ../shared/reference/modeling.md §2.1):
  attention/dense mesh   tp · cp · dp · pp        = devices
  expert mesh            etp · ep · edp · pp      = devices,  so edp = tp·cp·dp / (etp·ep)
cp is context parallelism (Megatron CP: the sequence split over cp devices, ring attention with
`cp_comm = "p2p"` or DeepSpeed-Ulysses all-to-all with `"a2a"`; moesim.estimate.context_parallel).
It sits right after tp in the attention mesh, as in Megatron's default order tp-cp-ep-dp-pp, and is
not listed in `order`; the expert mesh folds it into ep/edp (experts see the cp ranks' tokens as data).
`vp` is the virtual pipeline stages (model chunks) per device of the interleaved schedule
(Megatron `--num-layers-per-virtual-pipeline-stage`; moesim.des.orders): layers split into pp·vp chunks.
Switch/GShard's expert+data parallelism is the case tp = etp = 1, ep ≤ dp: experts are laid over
the devices of a pipeline stage and expert parallelism reuses the data axis.

`order` lists the mesh axes innermost (fastest-varying device id) first. In the expert mesh
`tp` stands for etp and `dp` for edp, so ("tp", "ep", "dp", "pp") puts expert groups on
neighbouring devices (DeepSpeed's "E+D") and ("tp", "dp", "ep", "pp") spreads them ("D+E").

Pipeline stages hold contiguous layers (`stage_layers`): L/pp each when pp divides the L layers.
Otherwise each stage gets ⌊L/pp⌋ and the r = L mod pp leftover layers go one per stage to the
middle stages first, last middle stage (pp − 2) first, then to the first stage; the last stage
never gets one. Why: the first stage also carries the input embedding (its parameters and
optimizer states) and the last the output logits (2·h·V FLOP per token forward: 0.3 of a
Mixtral-8x7B layer, 1.2 of a DeepSeek-V3 layer), so the middle stages have the room; and under 1F1B
stage s keeps min(m, pp − s) micro-batches of activations in flight, so a leftover layer costs the
least memory on the latest middle stages (DeepSeek-V3, 61 layers on 16 stages: 3, 3, 13 × 4, 3).
Megatron-Core itself requires pp | L unless `--decoder-first-pipeline-num-layers` /
`--decoder-last-pipeline-num-layers` are given: a layout's `first_stage_layers` /
`last_stage_layers` are those flags; the other layers then split over the remaining stages by the
rule above (each stage ≥ 1 layer; Megatron wants them to divide evenly, moesim takes the leftovers
too). The search splits automatically (it never sets them).
`pipeline_layout` is Megatron's `--pipeline-model-parallel-layout` string (moesim.specs.pipeline_layout): which
layers each of the pp·vp virtual stages holds, uneven chunks allowed; vp and the end stages' layer counts are read
off it (given too, they must agree), and the simulator gives each chunk its own layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moesim.errors import SpecError
# Session 25 (tidy25): the layout's keys and its one-line text form in layout_line.py; every name still importable
# from here (tests/test_module_split.py MOVED)
from moesim.specs.layout_line import (  # noqa: F401
    DROPLESS, LAYOUT_KEYS, LAYOUT_LINE_KEYS, OPTION_KEYS, STAGE_KEYS, layout_arg, option_problem, parse_layout_text,
    parse_layout_value, split_layout_options)
from moesim.specs.layout_line import check_option as _check_option  # noqa: F401
from moesim.specs.ranges import check_ranges

AXES = ("tp", "ep", "dp", "pp")
DEFAULT_ORDER = ("tp", "ep", "dp", "pp")
CP_COMMS = ("p2p", "a2a")  # Megatron/TE cp_comm_type: ring of KV chunks, or Ulysses all-to-all


def stage_split_problem(num_layers: int, pp: int, first: int | None = None, last: int | None = None) -> str | None:
    """Why `num_layers` cannot split into `pp` stages of ≥ 1 layer with the given first/last sizes, or None."""
    if pp > num_layers:
        return f"layers = {num_layers} is fewer than pp = {pp} stages (each stage needs one layer or more)"
    given = {k: v for k, v in zip(STAGE_KEYS, (first, last)) if v is not None}
    if not given:
        return None
    text = ", ".join(f"{k} = {v}" for k, v in given.items())
    if pp < 2:
        return f"{text} needs pp >= 2 (pp = {pp})"
    free = pp - len(given)
    left = num_layers - sum(given.values())
    if free == 0 and left != 0:
        return f"{text} must add up to layers = {num_layers} with pp = {pp}"
    if left < free:
        return (f"{text} leaves {left} of layers = {num_layers} for the other {free} of pp = {pp} stages "
                "(one or more each needed)")
    return None


def stage_layers(num_layers: int, pp: int, first: int | None = None, last: int | None = None) -> tuple[int, ...]:
    """Layers on each of `pp` contiguous stages: L/pp each when pp | L, else ⌊L/pp⌋ plus one of the
    L mod pp leftovers on stages pp − 2, pp − 3, …, 1, then 0 (see the module docstring); `first` /
    `last` fix the end stages and the rest split the same way over the others."""
    problem = stage_split_problem(num_layers, pp, first, last)
    if problem:
        raise SpecError(problem, field="layout", value=f"layers={num_layers}, pp={pp}")
    sizes = [0] * pp
    fixed = {i: v for i, v in ((0, first), (pp - 1, last)) if v is not None}
    for i, v in fixed.items():
        sizes[i] = v
    # Leftover priority: middle stages from the last one back, then the first, then the last stage.
    free = [s for s in [*range(pp - 2, 0, -1), 0, pp - 1][:pp] if s not in fixed]
    if free:
        base, extra = divmod(num_layers - sum(fixed.values()), len(free))
        for n, s in enumerate(free):
            sizes[s] = base + (n < extra)
    return tuple(sizes)


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Parallel degrees and their order on the device mesh."""

    dp: int
    tp: int = 1
    ep: int = 1
    pp: int = 1
    etp: int = 1
    order: tuple[str, ...] = DEFAULT_ORDER
    first_stage_layers: int | None = None  # None: the automatic split (stage_layers)
    last_stage_layers: int | None = None
    vp: int = 1  # virtual pipeline stages per device (interleaved schedule)
    cp: int = 1  # context-parallel degree
    cp_comm: str = "p2p"  # p2p (ring attention) | a2a (Ulysses)
    pipeline_layout: str | None = None  # Megatron's --pipeline-model-parallel-layout (specs.pipeline_layout)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.cp_comm not in CP_COMMS:
            raise SpecError(f"unknown cp_comm '{self.cp_comm}'", field="layout.cp_comm", value=self.cp_comm,
                            allowed=CP_COMMS)
        for name in ("dp", "tp", "ep", "pp", "etp", "vp", "cp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"degree must be an integer >= 1, got {value!r}", field=f"layout.{name}",
                                value=value)
        for name in STAGE_KEYS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SpecError(f"must be an integer >= 1 (or left out), got {value!r}", field=f"layout.{name}",
                                value=value)
        order = tuple(self.order)
        if sorted(order) != sorted(AXES):
            raise SpecError(f"order must list each of {', '.join(AXES)} once, got {', '.join(order)}",
                            field="layout.order", value=order, allowed=AXES)
        object.__setattr__(self, "order", order)
        if self.pipeline_layout is not None:
            self.pipeline  # noqa: B018  (parsed now: a bad string is the layout's error, not a later one)

    @property
    def pipeline(self):
        """The parsed `pipeline_layout` (moesim.specs.pipeline_layout.PipelineLayout), None without one."""
        from moesim.specs.pipeline_layout import parse

        return None if self.pipeline_layout is None else parse(self.pipeline_layout, self.pp)

    @property
    def chunk_layers(self) -> tuple[int, ...] | None:
        """Decoder layers of each of the pp·vp virtual stages in layer order (pipeline_layout's), None without one."""
        return None if self.pipeline_layout is None else self.pipeline.chunk_layers

    @property
    def devices(self) -> int:
        return self.tp * self.cp * self.dp * self.pp

    @property
    def edp(self) -> int:
        """Expert data-parallel degree: replicas of each expert within a pipeline stage."""
        return (self.tp * self.cp * self.dp) // (self.etp * self.ep)

    def describe(self) -> str:
        text = f"dp={self.dp},tp={self.tp},ep={self.ep},pp={self.pp}"
        if self.etp != 1:
            text += f",etp={self.etp}"
        if self.order != DEFAULT_ORDER:
            text += f",order={'-'.join(self.order)}"
        for name in STAGE_KEYS:
            if getattr(self, name) is not None:
                text += f",{name}={getattr(self, name)}"
        for name, default in (("vp", 1), ("cp", 1), ("cp_comm", "p2p"), ("pipeline_layout", None)):
            if getattr(self, name) != default:
                text += f",{name}={getattr(self, name)}"
        return text

    def stage_layers(self, num_layers: int) -> tuple[int, ...]:
        """Layers on each pipeline stage (module docstring); raises SpecError when impossible."""
        return stage_layers(num_layers, self.pp, self.first_stage_layers, self.last_stage_layers)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"dp": self.dp, "tp": self.tp, "ep": self.ep, "pp": self.pp, "etp": self.etp,
                                  "edp": self.edp, "order": list(self.order)}
        out |= {k: getattr(self, k) for k in STAGE_KEYS if getattr(self, k) is not None}
        return out | {k: v for k, v, d in (("vp", self.vp, 1), ("cp", self.cp, 1), ("cp_comm", self.cp_comm, "p2p"),
                                           ("pipeline_layout", self.pipeline_layout, None)) if v != d}


def _degrees_text(values: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def resolve_layout(
    given: dict[str, object],
    *,
    devices: int,
    num_experts: int,
    source: str = "layout",
) -> Layout:
    """Fill the degrees `given` leaves out: tp = pp = etp = 1, dp = devices/(tp·pp), and for MoE
    ep = gcd(experts, tp·dp/etp) — every expert on its own device where possible, as Switch does."""
    tp = int(given.get("tp", 1))
    pp = int(given.get("pp", 1))
    etp = int(given.get("etp", 1))
    cp = int(given.get("cp", 1))
    if "dp" in given:
        dp = int(given["dp"])
    else:
        positive = min(tp, cp, pp) >= 1  # else Layout's range check below names the degree
        if positive and devices % (tp * cp * pp):
            raise SpecError(f"cannot infer dp: devices={devices} is not a multiple of tp·cp·pp = {tp}·{cp}·{pp}",
                            field=source, value=_degrees_text({"tp": tp, "cp": cp, "pp": pp}))
        dp = devices // (tp * cp * pp) if positive else devices
    if "ep" in given:
        ep = int(given["ep"])
    elif num_experts > 1 and etp >= 1 and (tp * cp * dp) % etp == 0:
        ep = math.gcd(num_experts, (tp * cp * dp) // etp)
    else:
        ep = 1
    order = tuple(given.get("order", DEFAULT_ORDER))
    stages = {k: int(given[k]) for k in STAGE_KEYS if given.get(k) is not None}
    extra = {k: given[k] for k in ("vp", "cp", "cp_comm", "pipeline_layout") if k in given}
    if given.get("pipeline_layout") is not None:  # vp and the end stages read off the layout unless given
        from moesim.specs.pipeline_layout import parse

        pl = parse(given["pipeline_layout"], pp, field=f"{source}.pipeline_layout")
        extra.setdefault("vp", pl.vp)
        if pp > 1:
            for key, value in zip(STAGE_KEYS, (pl.device_layers[0], pl.device_layers[-1])):
                stages.setdefault(key, value)
    try:
        layout = Layout(dp=dp, tp=tp, ep=ep, pp=pp, etp=etp, order=order, **stages, **extra)
    except SpecError as err:  # a degree out of range, as typed on the command line: the flag's error, not 'layout.dp'
        if source != "--layout" or not (err.field or "").startswith("layout."):
            raise
        typed = "-".join(err.value) if isinstance(err.value, (tuple, list)) else err.value  # an order as typed
        raise SpecError(f"'{err.field.removeprefix('layout.')}={typed}': {err.message}", field=source,
                        value=err.value, allowed=err.allowed) from None
    if "edp" in given and given["edp"] != layout.edp:
        inner = f"tp·cp·dp/(etp·ep) = {tp}·{cp}·{dp}/({etp}·{ep})" if cp != 1 else \
            f"tp·dp/(etp·ep) = {tp}·{dp}/({etp}·{ep})"
        raise SpecError(f"edp = {given['edp']} but {inner} = {layout.edp} "
                        "(edp is derived; leave it out or give the value search printed)", field=source,
                        value=_degrees_text({"dp": dp, "tp": tp, "ep": ep, "etp": etp}))
    return layout


def pipeline_stage_mismatch(layout: Layout) -> str | None:
    """Both meshes must cut the devices into the same pipeline stages; say why not, or None."""
    inner_attention = 1
    for axis in layout.order:
        if axis == "pp":
            break
        inner_attention *= {"tp": layout.tp * layout.cp, "dp": layout.dp, "ep": 1}[axis]
    inner_expert = 1
    for axis in layout.order:
        if axis == "pp":
            break
        inner_expert *= {"tp": layout.etp, "dp": layout.edp, "ep": layout.ep}[axis]
    if inner_attention != inner_expert:
        return (f"order {'-'.join(layout.order)} puts pp inside the mesh with tp={layout.tp} != etp={layout.etp}: "
                "attention and expert meshes would cut different pipeline stages")
    return None


def layout_problems(
    layout: Layout,
    *,
    devices: int,
    num_experts: int,
    num_heads: int,
    num_kv_heads: int,
    d_ff: int,
    expert_d_ff: int,
    num_layers: int,
    global_batch_sequences: int,
    micro_batches: int,
    schedule: str = "1f1b",
    seq_len: int = 0,
    mtp_depth: int = 0,
) -> list[str]:
    """Every reason `layout` is impossible (empty when valid). Pure; used by checks and search."""
    degrees = {"dp": layout.dp, "tp": layout.tp, "ep": layout.ep, "pp": layout.pp, "etp": layout.etp}
    if layout.cp != 1:
        degrees["cp"] = layout.cp
    text = _degrees_text(degrees)
    problems = []
    tp_text = f"tp·cp = {layout.tp}·{layout.cp}" if layout.cp != 1 else f"tp = {layout.tp}"
    if layout.devices != devices:
        product = "tp·cp·dp·pp" if layout.cp != 1 else "tp·dp·pp"
        values = f"{layout.tp}·{layout.cp}·{layout.dp}·{layout.pp}" if layout.cp != 1 else \
            f"{layout.tp}·{layout.dp}·{layout.pp}"
        problems.append(f"{product} = {values} = {layout.devices} must equal devices = {devices} ({text})")
    if (layout.tp * layout.cp * layout.dp) % (layout.etp * layout.ep):
        inner = f"tp·cp·dp = {layout.tp}·{layout.cp}·{layout.dp}" if layout.cp != 1 else \
            f"tp·dp = {layout.tp}·{layout.dp}"
        problems.append(f"etp·ep = {layout.etp}·{layout.ep} must divide {inner} "
                        f"(etp·ep·edp·pp = devices; {text})")
    if num_experts <= 1 and layout.ep > 1:
        problems.append(f"ep = {layout.ep} needs an MoE model (this model has no experts)")
    elif num_experts > 1 and num_experts % layout.ep:
        problems.append(f"num_experts = {num_experts} is not divisible by ep = {layout.ep}")
    if num_heads % layout.tp:
        problems.append(f"num_heads = {num_heads} is not divisible by tp = {layout.tp}")
    elif num_kv_heads % layout.tp and layout.tp % num_kv_heads:
        problems.append(f"num_kv_heads = {num_kv_heads} and tp = {layout.tp}: one must divide the other")
    if d_ff % layout.tp:
        problems.append(f"d_ff = {d_ff} is not divisible by tp = {layout.tp}")
    if num_experts > 1 and expert_d_ff % layout.etp:
        problems.append(f"expert_d_ff = {expert_d_ff} is not divisible by etp = {layout.etp}")
    split = stage_split_problem(num_layers, layout.pp, layout.first_stage_layers, layout.last_stage_layers)
    if split:
        problems.append(split)
    if layout.pipeline_layout is not None:
        from moesim.specs.pipeline_layout import layout_problems as pipeline_problems

        problems += pipeline_problems(layout.pipeline, num_layers=num_layers, mtp_depth=mtp_depth, vp=layout.vp,
                                      first=layout.first_stage_layers, last=layout.last_stage_layers)
    if layout.cp > 1 and seq_len and seq_len % (2 * layout.cp):
        # Causal balance splits each sequence into 2·cp chunks (TE DualChunkSwap: s divisible by 2·cp).
        problems.append(f"cp = {layout.cp} needs seq_len = {seq_len} divisible by 2·cp = {2 * layout.cp}")
    mismatch = pipeline_stage_mismatch(layout) if not problems else None
    if mismatch:
        problems.append(mismatch)
    if global_batch_sequences % (layout.dp * micro_batches):
        problems.append(f"global batch = {global_batch_sequences} sequences is not divisible by "
                        f"dp·micro_batches = {layout.dp}·{micro_batches}")
    problems += schedule_problems(schedule, layout.pp, layout.vp, num_layers, micro_batches,
                                  chunks_given=layout.pipeline_layout is not None)
    if schedule == "zb-v":  # each device's layers go to its two chunks (workload.v_shape_ranges)
        problems += [f"zb-v needs {key} = {value} >= 2 (two chunks per device)"
                     for key, value in zip(STAGE_KEYS, (layout.first_stage_layers, layout.last_stage_layers))
                     if value is not None and value < 2]
    if layout.cp > 1 and layout.cp_comm == "a2a" and num_heads % (layout.tp * layout.cp):
        # Ulysses scatters heads over the CP group (SimuMax asserts head_num % cp_size == 0).
        problems.append(f"cp_comm = a2a needs num_heads = {num_heads} divisible by {tp_text}")
    return problems


def a2a_overlap_problems(overlap: bool, schedule: str, pp: int, ep: int) -> list[str]:
    """Why Megatron-Core refuses its EP A2A overlap (training.moe_a2a_overlap) on this layout (empty when it runs)."""
    out = []
    if overlap and ep == 1:  # Megatron-LM d98e8a64 transformer_config.py l.3013-3015: expert_model_parallel_size > 1
        out.append("moe_a2a_overlap needs ep > 1 (Megatron-LM transformer_config.py: 'overlap_moe_expert_parallel_comm "
                   "is only supported with expert model parallelism')")
    if overlap and pp > 1 and schedule != "interleaved":  # transformer_config.py l.3007-3011: vp needed at pp > 1
        out.append(f"moe_a2a_overlap at pp = {pp} needs pipeline_schedule = interleaved (got {schedule}; Megatron-LM "
                   "transformer_config.py asserts virtual_pipeline_model_parallel_size at pp > 1)")
    return out


def schedule_problems(schedule: str, pp: int, vp: int, num_layers: int, micro_batches: int,
                      chunks_given: bool = False) -> list[str]:
    """Why `schedule` cannot run pp stages × vp chunks of num_layers with m micro-batches (empty when it can).

    Megatron's interleaved schedule wants L divisible by pp·vp and m a multiple of pp (Narayanan et al.
    §2.2.2); DualPipe wants pp and m even and m ≥ 2·pp (DeepSeek-V3 §3.2.1; `deepseek-ai/DualPipe`
    asserts num_chunks >= 2·num_ranks); only the interleaved schedule has vp > 1. `chunks_given`: a pipeline
    layout names each chunk's layers (Megatron-LM transformer_block.py get_num_layers_to_build takes the layout's
    count and skips its pp·vp divisibility assert), so L need not divide."""
    m, out = micro_batches, []
    if vp > 1 and schedule != "interleaved":
        out.append(f"vp = {vp} needs pipeline_schedule = interleaved (got {schedule})")
    if schedule == "interleaved":
        if vp < 2:
            out.append(f"the interleaved schedule needs vp >= 2 (vp = {vp})")
        if num_layers % (pp * vp) and not chunks_given:
            out.append(f"vp = {vp} needs layers = {num_layers} divisible by pp·vp = {pp}·{vp}")
        if m % pp:
            out.append(f"the interleaved schedule needs micro_batches = {m} divisible by pp = {pp}")
        if pp < 2:
            out.append("the interleaved schedule needs pp >= 2")
    if schedule == "zb-v" and num_layers < 2 * pp:
        out.append(f"zb-v needs layers = {num_layers} >= 2·pp = {2 * pp} (two chunks per device)")
    if schedule == "dualpipe" and (pp % 2 or m % 2 or m < 2 * pp):
        out.append(f"dualpipe needs pp = {pp} even and micro_batches = {m} even and >= 2·pp")
    return out
