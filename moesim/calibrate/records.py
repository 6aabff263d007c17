"""Measurements read for calibration: validate/ JSONL records and nccl-tests logs, read strictly.

Two kinds of JSONL record come from the validate/ harness (`python -m validate.run`), one JSON
object per line, `schema_version` 1:
  "switch_layer"  one Switch MoE layer configuration: per-phase timings (order statistics of the
                  per-repeat maximum over ranks), bytes moved, expert FLOPs;
  "collective"    one collective over the whole world, median time per message size.
Records whose `status` is not "ok" (a run that failed) are skipped and counted. Everything else
that is malformed is a SpecError naming `file:line` and the field.

Units: every time here is seconds (median over repeats), every size bytes, sizes of collectives in
nccl-tests' convention (moesim/collectives/base.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from moesim.errors import SpecError
from moesim.jsonl import parse_jsonl_bytes, read_jsonl_objects, warn_skipped
from moesim.paths import read_bytes_file
from moesim.specs.hardware import DTYPE_BYTES, DTYPES

RECORD_SCHEMA_VERSION = 1
RECORD_KINDS = ("switch_layer", "collective")
# Harness op names -> moesim collective names (moesim/collectives/base.py OPS).
HARNESS_OPS = {"all_to_all_single": "all_to_all", "all_reduce": "all_reduce", "all_gather": "all_gather",
               "reduce_scatter": "reduce_scatter"}
# Phases of a switch_layer record, in pipeline order (validate/switch_layer.py); "layer" is the total.
FORWARD_PHASES = ("router", "dispatch_permute", "dispatch_a2a", "expert_compute", "combine_a2a",
                  "combine_unpermute")
LAYER_PHASES = FORWARD_PHASES + ("backward",)  # the phases whose sum is one layer's forward+backward
PHASES = LAYER_PHASES + ("grad_sync",)  # required in every record
# The router phase timed in two parts (router = router_matmul + router_gating on each rank); records
# written before the harness split it lack them, so they are read when present.
ROUTER_PARTS = ("router_matmul", "router_gating")
OPTIONAL_PHASES = ROUTER_PARTS
RECORD_CLOCKS = ("wall", "cpu", "cuda_events")  # validate/timing.py: how the record's phases were timed
TOTAL = "layer"
# The free-running forward+backward (no barrier between phases) is what a per-layer model predicts;
# the instrumented "layer" also holds the barriers between phases and is used only when it is absent.
TOTAL_SOURCES = ("layer_unsynced", "layer")


@dataclass(frozen=True, kw_only=True)
class LayerRecord:
    """One measured Switch layer configuration (per-rank figures are the maximum over ranks)."""

    key: str
    source: str  # "file:line"
    name: str
    config: Mapping[str, Any]  # the harness config, as written
    world_size: int
    ep_size: int
    dp_size: int
    experts_per_rank: int
    tokens_per_rank: int
    d_model: int
    d_ff: int
    top_k: int
    dtype: str
    element_bytes: int
    dispatch_bytes: float  # bytes one rank sends in the token all-to-all (own share included), max
    combine_bytes: float  # bytes one rank sends back in the combine all-to-all, max
    count_bytes: float  # bytes of the per-expert count exchange before the dispatch
    sent_rows: float  # token rows one rank sends (dispatch_bytes / (d_model × element bytes))
    received_rows: float  # token rows one rank's experts process, max
    expert_flops_forward: float  # forward FLOP of one rank's experts, max
    measured_s: Mapping[str, float]  # phase (and "layer") -> median seconds; OPTIONAL_PHASES only when measured
    spread: Mapping[str, float]  # phase -> (p90 − p10) / (2 · median), the run-to-run noise
    backend: str = ""
    device_name: str = ""
    clock: str = "wall"  # "cpu": compute phases, backward and layer are CPU time (validate/timing.py)
    device: str = ""  # env.device: the torch device type the harness ran on ("cpu", "cuda"; validate/records.py)

    @property
    def num_experts(self) -> int:
        return self.ep_size * self.experts_per_rank


@dataclass(frozen=True, kw_only=True)
class CollectivePoint:
    """One measured collective: `op` over a group of `group_size` ranks moving `size_bytes`."""

    op: str
    size_bytes: float
    group_size: int
    time_s: float
    source: str  # "file:line"
    variant: str = ""  # nccl-tests: "out_of_place" / "in_place"
    nccl_tests: bool = False  # a row of an nccl-tests log: priced as nccl-tests runs it (bench_cost.py)


@dataclass(frozen=True)
class MeasurementFile:
    """What calibrate needs of an input file beyond its records, taken from the one read of it (calspeed, session 9):
    the first 12 hex digits of its SHA-256 (the provenance) and, for an nccl-tests log, the nGpus of its headers."""

    path: str
    digest: str
    header_gpus: tuple[int, ...] = ()
    hosts: tuple[str, ...] = ()  # an nccl-tests log's rank lines' host names (nccl_tests.hosts_in_rank_lines)


@dataclass(frozen=True)
class Measurements:
    """Everything read from the input files."""

    layers: tuple[LayerRecord, ...] = ()
    collectives: tuple[CollectivePoint, ...] = ()
    sources: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())  # "file:line: why" for records not used
    # each nccl-tests log's group size against the one its busbw/algbw implies (calibrate/nccl_ranks.py)
    rank_checks: tuple = ()
    files: tuple[MeasurementFile, ...] = ()  # one per input file read by read_measurements, in its order

    def __add__(self, other: "Measurements") -> "Measurements":
        return Measurements(self.layers + other.layers, self.collectives + other.collectives,
                            self.sources + other.sources, self.skipped + other.skipped,
                            self.rank_checks + other.rank_checks, self.files + other.files)

    def file(self, path: str | Path) -> MeasurementFile:
        """The MeasurementFile read from `path` (as given to read_measurements)."""
        return next(f for f in self.files if f.path == str(Path(path)))


# --- strict field access ------------------------------------------------------------------

def _get(obj: Mapping[str, Any], path: str, kind: type | tuple, where: str, default: Any = ...) -> Any:
    """The value at dotted `path`; SpecError naming `where` (file:line) and the field otherwise."""
    value: Any = obj
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
            continue
        if not isinstance(value, Mapping) or part not in value:
            if default is not ...:
                return default
            raise SpecError("required field is missing", file=where, field=path)
        value = value[part]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise SpecError(f"expected {getattr(kind, '__name__', kind)}, got {value!r}", file=where, field=path,
                        value=value)
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"expected a finite number, got {value!r}", file=where, field=path, value=value)
    return value


def _positive(obj: Mapping[str, Any], path: str, where: str, kind: type = float, allow_zero: bool = False) -> Any:
    value = _get(obj, path, kind, where)
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"must be {'>= 0' if allow_zero else '> 0'}, got {value}", file=where, field=path,
                        value=value)
    return value


def record_key(record: Mapping[str, Any]) -> str:
    """The record's `key`, or 16 hex digits of SHA-256 over (kind, config, world size, backend)."""
    if isinstance(record.get("key"), str) and record["key"]:
        return record["key"]
    blob = json.dumps({"kind": record.get("kind"), "config": record.get("config"),
                       "world_size": (record.get("env") or {}).get("world_size"),
                       "backend": (record.get("env") or {}).get("backend")}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- switch_layer ---------------------------------------------------------------------------

def layer_record(rec: Mapping[str, Any], where: str) -> LayerRecord:
    """Build a LayerRecord from one parsed `switch_layer` JSON object."""
    world = _positive(rec, "config.world_size", where, int)
    env_world = _get(rec, "env.world_size", int, where)
    if env_world != world:
        raise SpecError(f"config.world_size {world} differs from env.world_size {env_world}", file=where,
                        field="env.world_size", value=env_world)
    ep = _positive(rec, "derived.ep_size", where, int)
    dp = _positive(rec, "derived.dp_size", where, int)
    if ep * dp != world:
        raise SpecError(f"ep_size {ep} x dp_size {dp} is not world_size {world}", file=where,
                        field="derived.ep_size", value=ep)
    dtype = _get(rec, "config.dtype", str, where)
    if dtype not in DTYPES:
        raise SpecError(f"unknown dtype '{dtype}'", file=where, field="config.dtype", value=dtype, allowed=DTYPES)
    elem = _positive(rec, "derived.element_bytes", where, int)
    if elem != DTYPE_BYTES[dtype]:
        raise SpecError(f"element_bytes {elem} does not match dtype {dtype} ({DTYPE_BYTES[dtype]} bytes)",
                        file=where, field="derived.element_bytes", value=elem)
    d_model = _positive(rec, "config.d_model", where, int)
    measured, spread = {}, {}
    for phase in PHASES:
        measured[phase], spread[phase] = _phase(rec, phase, where)
    for phase in OPTIONAL_PHASES:
        if phase in (rec.get("phases") or {}):
            measured[phase], spread[phase] = _phase(rec, phase, where)
    total = next((name for name in TOTAL_SOURCES if name in (rec.get("phases") or {})), TOTAL_SOURCES[0])
    measured[TOTAL], spread[TOTAL] = _phase(rec, total, where)
    dispatch = _positive(rec, "bytes.dispatch_bytes_per_rank_max", where)
    clock = _get(rec, "clock", str, where, default="wall")
    if clock not in RECORD_CLOCKS:
        raise SpecError(f"unknown clock '{clock}'", file=where, field="clock", value=clock, allowed=RECORD_CLOCKS)
    return LayerRecord(
        key=record_key(rec), source=where, name=_get(rec, "config.name", str, where, default=""),
        config=dict(_get(rec, "config", Mapping, where)), world_size=world, ep_size=ep, dp_size=dp,
        experts_per_rank=_positive(rec, "config.experts_per_rank", where, int),
        tokens_per_rank=_positive(rec, "config.tokens_per_rank", where, int), d_model=d_model,
        d_ff=_positive(rec, "config.d_ff", where, int), top_k=_positive(rec, "config.top_k", where, int),
        dtype=dtype, element_bytes=elem, dispatch_bytes=dispatch,
        combine_bytes=_positive(rec, "bytes.combine_bytes_per_rank_max", where, allow_zero=True),
        count_bytes=_positive(rec, "bytes.dispatch_count_bytes_per_rank", where),
        sent_rows=dispatch / (d_model * elem),
        received_rows=_positive(rec, "tokens.received_rows_per_rank_max", where, allow_zero=True),
        expert_flops_forward=_positive(rec, "expert_flops_per_rank_forward", where, allow_zero=True),
        measured_s=measured, spread=spread, backend=_get(rec, "env.backend", str, where, default=""),
        device_name=_get(rec, "env.device_name", str, where, default=""), clock=clock,
        device=_get(rec, "env.device", str, where, default=""),
    )


def _phase(rec: Mapping[str, Any], phase: str, where: str) -> tuple[float, float]:
    median = _positive(rec, f"phases.{phase}.median_s", where)
    p10 = _get(rec, f"phases.{phase}.p10_s", float, where, default=median)
    p90 = _get(rec, f"phases.{phase}.p90_s", float, where, default=median)
    return median, (p90 - p10) / (2 * median)


# --- collective -----------------------------------------------------------------------------

def collective_points(rec: Mapping[str, Any], where: str) -> list[CollectivePoint]:
    """The points of one parsed `collective` record (the collective spans the whole world)."""
    op = _get(rec, "config.op", str, where)
    if op not in HARNESS_OPS:
        raise SpecError(f"unknown collective op '{op}'", file=where, field="config.op", value=op,
                        allowed=tuple(HARNESS_OPS))
    world = _positive(rec, "env.world_size", where, int)
    points = _get(rec, "points", list, where)
    if not points:
        raise SpecError("no measured points", file=where, field="points")
    out = []
    for i in range(len(points)):
        size = float(_positive(rec, f"points.{i}.bytes", where, int))
        out.append(CollectivePoint(op=HARNESS_OPS[op], size_bytes=size, group_size=world,
                                   time_s=_positive(rec, f"points.{i}.median_s", where), source=where))
    return out


# --- files ----------------------------------------------------------------------------------

def bytes_digest(data: bytes) -> str:
    """First 12 hex digits of the SHA-256 of a file's bytes (identifies the measurements a profile was fitted on)."""
    return hashlib.sha256(data).hexdigest()[:12]


def read_jsonl(path: str | Path, *, data: bytes | None = None) -> Measurements:
    """All records of a validate/ JSONL file; a bad line is a SpecError naming `file:line`. `data`: the file's bytes
    where the caller has read them (read_measurements), else they are read here."""
    path = Path(path)
    lines = read_jsonl_objects(path) if data is None else parse_jsonl_bytes(data, str(path))
    warn_skipped(lines.warnings)
    layers, collectives, skipped = [], [], list(lines.warnings)
    first_line: dict[str, int] = {}
    for number, rec in lines.objects:
        where = f"{path}:{number}"
        version = _get(rec, "schema_version", int, where)
        if version != RECORD_SCHEMA_VERSION:
            raise SpecError(f"record schema version {version} is not supported", file=where, field="schema_version",
                            value=version, allowed=(RECORD_SCHEMA_VERSION,))
        kind = _get(rec, "kind", str, where)
        if kind not in RECORD_KINDS:
            raise SpecError(f"unknown record kind '{kind}'", file=where, field="kind", value=kind, allowed=RECORD_KINDS)
        status = _get(rec, "status", str, where)
        if status != "ok":
            skipped.append(f"{where}: status '{status}'")
            continue
        key = rec.get("key")
        if isinstance(key, str) and key in first_line:  # written twice (by a harness before issue #14)
            message = f"{where}: skipped a repeat of key {key} (first at line {first_line[key]})"
            warn_skipped([message])
            skipped.append(message)
            continue
        if isinstance(key, str):
            first_line[key] = number
        if kind == "switch_layer":
            layers.append(layer_record(rec, where))
        else:
            collectives.extend(collective_points(rec, where))
    if not layers and not collectives:
        why = (f"line {skipped[0].removeprefix(f'{path}:')}; {len(skipped)} skipped in all" if skipped
               else "every line blank")
        raise SpecError(f"no usable records ({why})", file=str(path),
                        allowed="one JSON object per line with status 'ok'")
    return Measurements(tuple(layers), tuple(collectives), (str(path),), tuple(skipped))


def read_measurements(paths: list[str | Path], nccl_op: str | None = None,
                      nccl_ranks: int | None = None) -> Measurements:
    """Read JSONL records and nccl-tests logs (told apart by their first non-blank character).

    `nccl_op` names the collective of nccl-tests logs that neither say it nor carry it in their name;
    `nccl_ranks` their group size where the log's rank list was cut.
    """
    from moesim.calibrate.nccl_tests import gpus_in_headers, hosts_in_rank_lines, read_nccl_tests

    if not paths:
        raise SpecError("no measurement files given")
    total = Measurements()
    seen: dict[Path, Path] = {}
    for path in paths:
        path = Path(path)
        same = seen.setdefault(path.resolve(), path)
        if same is not path:  # its rows would count twice
            raise SpecError(f"given twice (also as {same}): each measurement file once", file=str(path),
                            field="measurements")
        data = read_bytes_file(path, field="measurements")  # the one read of the file (calspeed, session 9)
        raw = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
        _check_text(raw, path)
        first = raw.lstrip()[:1].decode("latin-1")
        digest = bytes_digest(data)
        # a JSON array of objects (json.dump of a list) would be read as a log; a log's '[host]' tags are not one
        if first == "[" and raw.lstrip()[1:].lstrip()[:1] == b"{":
            raise SpecError("a JSON array, not JSON lines (expected validate/ JSONL records, one JSON object per "
                            "line, or an nccl-tests log)", file=str(path), field="measurements")
        if first != "{" and path.suffix.lower() in (".jsonl", ".json"):  # else read as a log: "no result rows"
            char = raw.lstrip()[:4].decode("utf-8", errors="replace")[:1]
            raise SpecError(f"named {path.suffix} but not JSON lines: its first non-blank character is {char!r}, not "
                            "'{' (expected validate/ JSONL records, one JSON object per line, or an nccl-tests log: "
                            "its '#  size  count  type ... busbw' header and rows)", file=str(path),
                            field="measurements")
        if first == "{":
            read = read_jsonl(path, data=data) + Measurements(files=(MeasurementFile(str(path), digest),))
        else:
            read = read_nccl_tests(path, nccl_op, nccl_ranks, data=data) + Measurements(
                files=(MeasurementFile(str(path), digest, gpus_in_headers(data), hosts_in_rank_lines(data)),))
        total = total + read
    keys = [rec.key for rec in total.layers]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        where = [rec.source for rec in total.layers if rec.key == dupes[0]]
        raise SpecError(f"configuration key {dupes[0]} appears more than once ({', '.join(where)}); give each "
                        "measured configuration once")
    return total


def _check_text(raw: bytes, path: Path) -> None:
    """A SpecError for a measurements file that is empty or not text (NUL bytes: binary, or UTF-16)."""
    expected = "validate/ JSONL records or an nccl-tests log"
    if not raw.strip():
        raise SpecError(f"the file is empty (expected {expected})", file=str(path), field="measurements")
    if b"\x00" in raw[:65536]:
        raise SpecError(f"not a text file: it holds NUL bytes (binary, or UTF-16 text: convert it to UTF-8); "
                        f"expected {expected}", file=str(path), field="measurements")


def holdout_score(key: str, seed: int) -> float:
    """A uniform number in [0, 1) from SHA-256 of "seed:key": the seeded hash behind the held-out split."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_holdout(keys: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(fit keys, held-out keys): the round(fraction·n) keys of lowest holdout_score are held out.

    At least one key is held out and at least one kept when fraction > 0 and there are two or more;
    the split depends only on the keys, the fraction and the seed.
    """
    if not 0 <= fraction < 1:
        raise SpecError("holdout fraction must be in [0, 1)", field="holdout_fraction", value=fraction)
    ordered = sorted(keys, key=lambda k: (holdout_score(k, seed), k))
    n_hold = round(fraction * len(keys))
    if fraction > 0 and len(keys) >= 2:
        n_hold = min(max(n_hold, 1), len(keys) - 1)
    held = set(ordered[:n_hold])
    return [k for k in keys if k not in held], [k for k in keys if k in held]


# the harness's torch device types (validate/records.py env.device) and the profile device kind each measures
HARNESS_DEVICE_KINDS = {"cpu": ("cpu",), "cuda": ("gpu",)}


def device_mismatch_note(ran: list[tuple[str, str]], prior) -> str | None:
    """A line where harness records ran on another kind of device than the profile `prior` prices (CPU gloo records
    fitted into h100-sxm: the fitted efficiencies then describe the CPU); None where they match or do not say.
    `ran`: (file, env.device) of each record."""
    other = [(file, device) for file, device in ran
             if device in HARNESS_DEVICE_KINDS and prior.device_kind not in HARNESS_DEVICE_KINDS[device]]
    if not other:
        return None
    devices = sorted({device for _, device in other})
    return (f"{other[0][0]}: its switch_layer records ran on {' and '.join(devices)} (env.device), but "
            f"{prior.name}'s devices are {prior.device_kind}: they measure the machine that ran them, not "
            f"{prior.name} (cpu-localhost is the profile for CPU runs)")
