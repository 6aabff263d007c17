"""The TPU ICI model against published TPU collective measurements (tests/data/tpu/measurements.toml).

Two kinds of entry, both collective-level (microbenchmarks or per-operator profiles, never step times):
  growth: how one collective's time grows from D1 to D2 partitions at a fixed size per partition (GShard
          §5.2-5.3); error = predicted ratio / measured ratio - 1, per size.
  point:  one collective's time at given sizes (a JAX ppermute sweep); error = predicted / measured - 1.
A positive error means moesim grows faster (growth) or is slower (point) than measured.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.fields import Table
from moesim.specs.load import load_hardware
from moesim.topology.torus import axis_wraps, slice_shape, torus_link_count

MANIFEST = Path(__file__).resolve().parents[2] / "tests" / "data" / "tpu" / "measurements.toml"
COLLECTIVES = ("all_to_all", "all_reduce", "all_gather", "reduce_scatter", "send_recv")
READ_FROM = ("text", "table", "chart")
MIB = 2**20


@dataclass(frozen=True)
class Row:
    """One compared figure: what was measured, what moesim predicts, and the signed error."""

    name: str
    hardware: str
    collective: str
    size_bytes: float
    what: str  # "16 -> 2048" (growth) or "4 devices" (point)
    measured: float  # a ratio (growth) or seconds (point)
    predicted: float
    kind: str  # "growth" or "point"
    read_from: str
    fitted: bool
    source: str

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1


def _common(t: Table) -> dict:
    return dict(name=t.req("name", str), hardware=t.req("hardware", str),
                collective=t.choice("collective", COLLECTIVES), read_from=t.choice("read_from", READ_FROM),
                fitted=t.opt("fitted", bool, False), source=t.req("source", str))


def _time_s(model: TopologyModel, op: str, size: float, devices: int) -> float:
    group = Group(size=2, devices=devices) if op == "send_recv" else Group(size=devices, devices=devices)
    return model.cost(op, size, group).time_s


def compare(path: Path = MANIFEST) -> list[Row]:
    """Every entry of the manifest priced with the shipped profile it names (strict keys, schema_version 1)."""
    root = Table(tomllib.loads(path.read_text(encoding="utf-8")), file=str(path))
    if root.req("schema_version", int) != 1:
        raise root.error("schema_version", "unsupported schema_version", allowed=(1,))
    rows: list[Row] = []
    models: dict[str, TopologyModel] = {}
    for t in root.sub_list("growth", required=False):
        c = _common(t)
        sizes = [s * MIB for s in t.req("sizes_mib", list)]
        d1, d2, ratio = t.req("partitions_from", int), t.req("partitions_to", int), t.req("measured_ratio", float)
        t.finish()
        model = models.setdefault(c["hardware"], TopologyModel(load_hardware(c["hardware"])))
        for size in sizes:
            got = _time_s(model, c["collective"], size, d2) / _time_s(model, c["collective"], size, d1)
            rows.append(Row(size_bytes=size, what=f"{d1} -> {d2}", measured=ratio, predicted=got, kind="growth", **c))
    for t in root.sub_list("point", required=False):
        c = _common(t)
        devices = t.req("devices", int)
        sizes, times_us = t.req("sizes_bytes", list), t.req("measured_us", list)
        t.finish()
        if len(sizes) != len(times_us):
            raise SpecError("sizes_bytes and measured_us differ in length", file=str(path), field=c["name"])
        model = models.setdefault(c["hardware"], TopologyModel(load_hardware(c["hardware"])))
        for size, us in zip(sizes, times_us):
            rows.append(Row(size_bytes=float(size), what=f"{devices} devices", measured=us * 1e-6,
                            predicted=_time_s(model, c["collective"], size, devices), kind="point", **c))
    root.finish()
    return rows


def _size(nbytes: float) -> str:
    for unit, scale in (("MiB", MIB), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"


def render(rows: list[Row]) -> str:
    """The docs/collectives.md TPU table (fixed-width, one line per compared figure)."""
    head = f"{'entry':30}  {'profile':8}  {'collective':10}  {'size':>8}  {'partitions':>12}  " \
           f"{'measured':>10}  {'moesim':>10}  {'error':>7}  {'read from':9}  fitted"
    lines = [head, "-" * len(head)]
    for r in rows:
        fmt = (lambda v: f"x{v:.2f}") if r.kind == "growth" else (lambda v: f"{v * 1e6:.2f} us")
        lines.append(f"{r.name:30}  {r.hardware:8}  {r.collective:10}  {_size(r.size_bytes):>8}  {r.what:>12}  "
                     f"{fmt(r.measured):>10}  {fmt(r.predicted):>10}  {r.error:+7.1%}  {r.read_from:9}  "
                     f"{'yes' if r.fitted else 'no'}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Probe:
    """What candidate mechanisms give on one growth figure (computed, not shipped): the ratio were the
    profile's wraparound rule "never" (every slice a mesh) or "always" (every slice a torus), were the
    all-to-all's axes run one after another (transfers summed, not overlapped), and the per-destination
    cost that would turn the shipped ratio into the measured one. None where it does not apply."""

    name: str
    collective: str
    size_bytes: float
    what: str
    measured: float
    shipped: float  # the shipped profile's ratio
    without_wraparound: float  # wraparound = "never"
    wraparound_everywhere: float  # wraparound = "always"
    axes_in_sequence: float | None  # all-to-all only
    gshard_estimate: float | None  # all-to-all only: GShard's own t = d·h/l on the shipped slices
    per_peer_s: float | None  # all-to-all only


def _with_rule(hw, rule: str):
    return dataclasses.replace(hw, interconnect=tuple(
        dataclasses.replace(level, wraparound=rule) if i == 0 else level for i, level in enumerate(hw.interconnect)))


def _in_sequence_s(model: TopologyModel, size: float, devices: int) -> float:
    """The dimension-ordered all-to-all with its per-axis transfers summed (one axis after another)."""
    (c,) = model.candidates("all_to_all", size, Group(size=devices, devices=devices))
    return c.base_latency_s + c.terms.latency_s + sum(c.terms.transfer_s)


def gshard_estimate(hw, devices: int) -> float:
    """GShard §5.3's bandwidth-bound AllToAll estimate t = d·h/l on the slice moesim gives `devices`
    partitions: d = devices (bytes sent, in units of one partition's data), h = mean hops between two chips
    (shortest paths, per axis ⌊·⌋ ring or line distance), l = directed links of the slice. Arbitrary unit:
    only ratios mean anything. Source: GShard (arXiv 2006.16668) §5.3, "t = dh/l = O(√D)"."""
    level = hw.interconnect[0]
    dims = slice_shape(tuple(level.dims), -(-devices // hw.chip.devices_per_chip))
    wraps = axis_wraps(level.wraparound, dims, tuple(level.dims))
    hops = sum(sum(min(abs(i - j), a - abs(i - j)) if w else abs(i - j) for i in range(a) for j in range(a)) / a**2
               for a, w in zip(dims, wraps))
    return devices * hops / (2 * torus_link_count(dims, wraps))


def probes(rows: list[Row]) -> list[Probe]:
    """For every growth row: the ratios under the candidate mechanisms (see Probe). For all-to-all rows also
    the per-destination cost t solving (T(D2) + (D2-1)t) / (T(D1) + (D1-1)t) = measured: one constant t
    should serve every size if such a cost were the mechanism."""
    out = []
    for r in rows:
        if r.kind != "growth":
            continue
        hw = load_hardware(r.hardware)
        d1, d2 = (int(x) for x in r.what.split(" -> "))

        def ratio(model: TopologyModel) -> float:
            return _time_s(model, r.collective, r.size_bytes, d2) / _time_s(model, r.collective, r.size_bytes, d1)

        plain = TopologyModel(hw)
        seq = per_peer = estimate = None
        if r.collective == "all_to_all":
            t1, t2 = _time_s(plain, r.collective, r.size_bytes, d1), _time_s(plain, r.collective, r.size_bytes, d2)
            per_peer = (r.measured * t1 - t2) / ((d2 - 1) - r.measured * (d1 - 1))
            seq = _in_sequence_s(plain, r.size_bytes, d2) / _in_sequence_s(plain, r.size_bytes, d1)
            estimate = gshard_estimate(hw, d2) / gshard_estimate(hw, d1)
        out.append(Probe(r.name, r.collective, r.size_bytes, r.what, r.measured, r.predicted,
                         ratio(TopologyModel(_with_rule(hw, "never"))),
                         ratio(TopologyModel(_with_rule(hw, "always"))), seq, estimate, per_peer))
    return out


def render_probes(found: list[Probe]) -> str:
    head = f"{'entry':30}  {'size':>8}  {'partitions':>12}  {'measured':>8}  {'shipped':>8}  " \
           f"{'no wraparound':>13}  {'all tori':>8}  {'axes in turn':>12}  {'GShard dh/l':>11}  {'per-peer cost needed':>20}"
    lines = [head, "-" * len(head)]
    for p in found:
        seq = "-" if p.axes_in_sequence is None else f"x{p.axes_in_sequence:.2f}"
        peer = "-" if p.per_peer_s is None else f"{p.per_peer_s * 1e6:.2f} us"
        est = "-" if p.gshard_estimate is None else f"x{p.gshard_estimate:.2f}"
        lines.append(f"{p.name:30}  {_size(p.size_bytes):>8}  {p.what:>12}  {f'x{p.measured:.2f}':>8}  "
                     f"{f'x{p.shipped:.2f}':>8}  {f'x{p.without_wraparound:.2f}':>13}  "
                     f"{f'x{p.wraparound_everywhere:.2f}':>8}  {seq:>12}  {est:>11}  {peer:>20}")
    return "\n".join(lines)
