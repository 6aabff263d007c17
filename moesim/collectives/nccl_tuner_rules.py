"""NCCL_PROTO and tuner-plugin rules: what a cluster's NCCL set-up forces on the tuner's (algorithm, protocol) pick.

`parse_nccl_proto`: NCCL_PROTO syntax ("LL128,Simple" keeps those, "^LL" drops LL, not case-sensitive;
"LL,Simple;allreduce:^LL" per collective). Source: NCCL src/graph/tuning.cc `parseList` and env.rst NCCL_PROTO.
TopologyModel(nccl_proto=...) restricts the candidates of the collectives NCCL's tuner prices (all-reduce,
all-gather, reduce-scatter, broadcast); a list that keeps LL128 passes NCCL's default LL128 gate (nccl_plan.plan).
Send/recv-based ops (all-to-all, send/recv) keep their own rule (protocols.p2p_protocol): NCCL's enqueue.cc
picks their protocol from the peer's LL buffer and NCCL_P2P_LL_THRESHOLD, not through the tuner.

`load_tuner_rules`: a tuner plugin's rules, "for (collective, nodes, ranks per node, message size) run
(algorithm, protocol[, channels])", in one of two files:
- NCCL's example tuner plugin CSV (NVIDIA/nccl ext-tuner/example, README.md and plugin.c), one rule a line:
      collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks[,numPipeOps[,regBuff]]
  collective_type: broadcast, reduce, allgather, reducescatter, allreduce; algorithm: tree, ring, collnet_direct,
  collnet_chain, nvls, nvls_tree, pat; protocol: ll, ll128, simple; channels, nNodes, nRanks, numPipeOps, regBuff:
  -1 = any (channels: NCCL's own). '#' starts a comment line; blank lines and the column-title line are skipped.
  It is NCCL's format, read as is so a cluster's own file loads unchanged: it carries no schema_version (its 8, 9
  or 10 fields are the version). Bytes as NCCL's tuner and nccl-tests count them (an all-gather's or
  reduce-scatter's whole buffer), both bounds inclusive; nNodes and nRanks exact or -1.
- a moesim TOML file (`.toml`, schema_version = 1) for what the CSV cannot say, ranges of nodes and of ranks per
  node and per-rank sizes (as a config-file tuner such as Google's gIB / TCPXO one is written, by node range,
  ranks-per-node range and per-rank message size; that format's own definition was not found, so it is not read):
      [[rule]]  collective = "all_gather"  algorithm = "ring"  protocol = "LL128"  (required; moesim's names)
                bytes = [0, 1048575] | per_rank_bytes = [0, 65535]   nodes = [2, 2]   ranks_per_node = [8, 8]
                ranks = [16, 16]   channels = 8   (optional; every range inclusive, absent = any)
  per_rank_bytes bounds what each rank holds: an all-gather's / reduce-scatter's size / ranks, an all-reduce's or
  broadcast's size.
Matching as plugin.c `pluginGetCollInfo`: the first rule that matches and whose (algorithm, protocol) the model
can run here (NCCL_ALGO / NCCL_PROTO allowing) is taken instead of NCCL's own pick; a rule that cannot run is
passed over, as the plugin passes over a cost-table entry NCCL marked IGNORE; no rule: NCCL's own pick.
What moesim does not model, and how the rules meet it: a collective call here is one operation with
unregistered buffers (numPipeOps 1, regBuff 0), so rules asking for other values never match; a positive
`channels` replaces the channels of the picked ring / tree on the wire (NCCL keeps its own threads and caps the count
at comm->nChannels from v2.20.3-1: nccl_channels.pinned_share; at v2.20.3-1 .. v2.21.5-1 the threads and aligned
channels of addTunedCollToPlan: nccl_tuned_plan.py; NVLS / PAT / CollNet keep theirs), -1 keeps NCCL's own
(no plugin before v2.19.1-1: nccl_code_rules.toml [tuner_plugin_available]), as the
plugin's README says (its plugin.c returns 1 by default: not followed, docs/collectives-history.md "Channel counts"); 'reduce' is read but
moesim has no reduce collective. Nodes are the NVLink domains the group spans (moesim's node; on a multi-node
NVLink rack NCCL counts hosts).
Strict loaders: any other value fails with one line naming the file, the line or rule, and the field.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from moesim.errors import SpecError

PROTOCOLS = ("LL", "LL128", "Simple")  # nccl.PROTOCOLS, NCCL's order
FIELDS = ("collective_type", "min_bytes", "max_bytes", "algorithm", "protocol", "channels", "nNodes", "nRanks",
          "numPipeOps", "regBuff")
TUNER_OPS = {"broadcast": "broadcast", "reduce": None, "allgather": "all_gather", "reducescatter": "reduce_scatter",
             "allreduce": "all_reduce"}  # None: NCCL's reduce, which moesim does not price
TUNER_ALGORITHMS = {"tree": "tree", "ring": "ring", "collnet_direct": "collnetdirect", "collnet_chain": "collnetchain",
                    "nvls": "nvls", "nvls_tree": "nvlstree", "pat": "pat"}  # plugin.c name -> moesim's (nccl.py)
TUNER_PROTOCOLS = {"ll": "LL", "ll128": "LL128", "simple": "Simple"}
PIPE_OPS, REG_BUFF = 1, 0  # what one moesim collective call is: one operation, buffers not registered


def parse_nccl_proto(text: str | None) -> dict[str, frozenset[str]]:
    """{collective: the protocol list NCCL_PROTO sets for it}, for the collectives NCCL's tuner picks that it sets
    (absent: NCCL's defaults). "LL128,Simple" keeps those, "^LL" drops LL, for every collective; entries after the
    first name their collective: "LL,Simple;allreduce:^LL" (LL and Simple, all-reduce everything but LL); "": {}.
    Source: NCCL src/graph/tuning.cc `parseList` (a 2.28+ source, read): the first entry may lack a prefix,
    prefixes are NCCL's function names (case-insensitive), each entry replaces its collective's whole list."""
    every_op = tuple(op for op in TUNER_OPS.values() if op is not None)
    out: dict[str, frozenset[str]] = {}
    if not text:
        return out
    for index, entry in enumerate(text.split(";")):
        if not entry:  # NCCL's strtok skips an empty entry ("allreduce:LL;", ";allreduce:LL"), as nccl_env_lists does
            continue
        prefix, colon, items = entry.partition(":")
        if not colon:
            if index:
                raise SpecError("NCCL_PROTO entries after the first name their collective ('allreduce:^LL')",
                                field="nccl_proto", value=text, allowed=tuple(TUNER_OPS))
            ops, items = every_op, prefix
        else:
            name = prefix.strip().lower()
            if name not in TUNER_OPS:
                raise SpecError(f"unknown NCCL function '{prefix.strip()}'", field="nccl_proto", value=text,
                                allowed=tuple(TUNER_OPS))
            ops = (TUNER_OPS[name],) if TUNER_OPS[name] else ()
        chosen = _protocol_list(items.strip(), text)
        for op in ops:
            out[op] = chosen
    return out


def _protocol_list(items: str, text: str) -> frozenset[str]:
    by_lower = {p.lower(): p for p in PROTOCOLS}
    exclude = items.startswith("^")
    names = [t.strip().lower() for t in items.lstrip("^").split(",") if t.strip()]
    if not names:
        raise SpecError("NCCL_PROTO names no protocol", field="nccl_proto", value=text, allowed=PROTOCOLS)
    for name in names:
        if name not in by_lower:
            raise SpecError(f"unknown NCCL protocol '{name}'", field="nccl_proto", value=text, allowed=PROTOCOLS)
    named = frozenset(by_lower[name] for name in names)
    chosen = frozenset(PROTOCOLS) - named if exclude else named
    if not chosen:
        raise SpecError("NCCL_PROTO leaves no protocol", field="nccl_proto", value=text, allowed=PROTOCOLS)
    return chosen


ANY = (1, 2**62)  # a range that matches every count and size


@dataclass(frozen=True)
class TunerRule:
    """One rule: for `op` with a size in [min_bytes, max_bytes] (per rank if `per_rank`) on a group whose nodes,
    ranks and ranks per node lie in their ranges (inclusive), run `algorithm` with `protocol` (moesim's names)."""

    op: str | None  # moesim's collective; None: NCCL's reduce (never matches here)
    algorithm: str
    protocol: str
    min_bytes: int = 0
    max_bytes: int = ANY[1]
    per_rank: bool = False  # the bounds are on the bytes each rank holds, not on the collective's size
    nodes: tuple[int, int] = ANY
    ranks: tuple[int, int] = ANY
    ranks_per_node: tuple[int, int] = ANY
    channels: int = -1  # -1: NCCL's own; else the picked ring / tree runs on min(channels, comm->nChannels)
    pipe_ops: int = -1
    reg_buff: int = -1
    line: int = 0  # where it was read: the CSV line or the TOML rule's number (0: built in code)

    def matches(self, op: str, size_bytes: float, nodes: int, ranks: int) -> bool:
        """plugin.c's test (collective, size range, nNodes, nRanks, numPipeOps, regBuff; -1 any) over ranges."""
        if self.op != op or self.pipe_ops not in (-1, PIPE_OPS) or self.reg_buff not in (-1, REG_BUFF):
            return False
        size = size_bytes / ranks if self.per_rank and op in ("all_gather", "reduce_scatter") else size_bytes
        per_node = ranks // nodes
        return (self.min_bytes <= size <= self.max_bytes and self.nodes[0] <= nodes <= self.nodes[1]
                and self.ranks[0] <= ranks <= self.ranks[1]
                and self.ranks_per_node[0] <= per_node <= self.ranks_per_node[1])


@dataclass(frozen=True)
class TunerRules:
    """A cluster's tuner-plugin rules, in file order (the first one that applies wins)."""

    rules: tuple[TunerRule, ...]
    source: str = ""  # the file they were read from
    _by_op: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for rule in self.rules:  # file order kept within each collective
            self._by_op.setdefault(rule.op, []).append(rule)

    def covers(self, op: str) -> bool:
        """Whether any rule names `op` (a cheap test before placing the group)."""
        return op in self._by_op

    def matching(self, op: str, size_bytes: float, nodes: int, ranks: int):
        """The rules that match, in file order (a generator: the caller stops at the first it can run)."""
        return (r for r in self._by_op.get(op, ()) if r.matches(op, size_bytes, nodes, ranks))

    def ops(self) -> frozenset[str]:
        return frozenset(r.op for r in self.rules if r.op is not None)


def rules_at_release(rules: "TunerRules | None", version: str) -> "TunerRules | None":
    """`rules` where NCCL at `version` has a tuner plugin interface; None (NCCL's own pick), with a warning, at a
    release without one (nccl_code_rules.toml [tuner_plugin_available]: NCCL_TUNER_PLUGIN is read from v2.19.1-1)."""
    from moesim.collectives.nccl_code_rules import rule  # here: nccl_code_rules is not needed to read a rules file

    if rules is None or not version or rule("tuner_plugin_available", version):
        return rules
    warnings.warn(f"--tuner-rules: NCCL {version} has no tuner plugin interface (NCCL_TUNER_PLUGIN is read from "
                  f"2.19.1), so NCCL's own tuner picks; the rules are not applied")
    return None


def load_tuner_rules(path: str | Path) -> TunerRules:
    """Read a tuner's rules: a `.toml` file in moesim's form, anything else as NCCL's example-plugin CSV (module
    docstring); SpecError naming the file, the line or rule, and the field on anything else."""
    path = Path(path)
    if path.suffix == ".toml":
        return _load_toml(path)
    from moesim.paths import read_bytes_file

    if not path.exists():
        raise SpecError("tuner rules file not found", file=str(path), field="tuner_rules")
    try:  # a directory, a device, a huge file: one line from read_bytes_file
        text = read_bytes_file(path, field="tuner_rules").decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text (a binary file?): expected NCCL's tuner CSV or a .toml of [[rule]]",
                        file=str(path), field="tuner_rules") from None
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = [t.strip() for t in line.split(",")]
        if tokens == list(FIELDS[:len(tokens)]) and len(tokens) >= 8:  # the column-title line
            continue
        rules.append(_csv_rule(tokens, f"{path}:{number}", number))
    if not rules:  # NCCL's example plugin loads such a file and keeps NCCL's own picks: so does moesim, but says so
        warnings.warn(f"{path}: no tuner rule in the file (only blank, '#' or title lines): NCCL's own pick everywhere")
    return TunerRules(tuple(rules), str(path))


def _csv_rule(tokens: list[str], where: str, number: int) -> TunerRule:
    if not 8 <= len(tokens) <= 10:
        raise SpecError(f"{len(tokens)} fields; NCCL's tuner format has 8 to 10 ({','.join(FIELDS)})", file=where)
    coll, algo, proto = tokens[0].lower(), tokens[3].lower(), tokens[4].lower()
    for name, value, table in (("collective_type", coll, TUNER_OPS), ("algorithm", algo, TUNER_ALGORITHMS),
                               ("protocol", proto, TUNER_PROTOCOLS)):
        if value not in table:
            raise SpecError(f"unknown {name} '{value}'", file=where, field=name, value=value, allowed=tuple(table))
    lo, hi = (_integer(tokens[i], FIELDS[i], where, 0) for i in (1, 2))
    if lo > hi:
        raise SpecError(f"min_bytes {lo} is above max_bytes {hi}", file=where, field="min_bytes", value=lo)
    channels, nodes, ranks, pipe_ops, reg_buff = (
        _integer(tokens[i], FIELDS[i], where, -1) if i < len(tokens) else -1 for i in range(5, 10))
    for name, value in zip(FIELDS[5:9], (channels, nodes, ranks, pipe_ops)):
        if value == 0:
            raise SpecError("must be -1 (any) or a positive count", file=where, field=name, value=value)
    if reg_buff not in (-1, 0, 1):
        raise SpecError("must be -1 (any), 0 or 1", file=where, field="regBuff", value=reg_buff, allowed=(-1, 0, 1))
    exact = lambda v: ANY if v == -1 else (v, v)  # noqa: E731
    return TunerRule(TUNER_OPS[coll], TUNER_ALGORITHMS[algo], TUNER_PROTOCOLS[proto], lo, hi,
                     nodes=exact(nodes), ranks=exact(ranks), channels=channels, pipe_ops=pipe_ops, reg_buff=reg_buff,
                     line=number)


TOML_KEYS = ("collective", "algorithm", "protocol", "bytes", "per_rank_bytes", "nodes", "ranks", "ranks_per_node",
             "channels")
_TOML_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
_TOML_ALGORITHMS = tuple(TUNER_ALGORITHMS.values())


def _load_toml(path: Path) -> TunerRules:
    from moesim.paths import read_versioned_toml

    data = read_versioned_toml(path)
    unknown = set(data) - {"schema_version", "rule"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", file=str(path), allowed=("schema_version", "rule"))
    entries = data.get("rule", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SpecError("must be an array of tables ([[rule]])", file=str(path), field="rule")
    return TunerRules(tuple(_toml_rule(e, str(path), i) for i, e in enumerate(entries, start=1)), str(path))


def _toml_rule(entry: dict, file: str, number: int) -> TunerRule:
    where = f"rule {number}"
    unknown = set(entry) - set(TOML_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}", file=file, allowed=TOML_KEYS)
    for name, allowed in (("collective", _TOML_OPS), ("algorithm", _TOML_ALGORITHMS), ("protocol", PROTOCOLS)):
        if entry.get(name) not in allowed:
            raise SpecError(f"{where}: missing or unknown", file=file, field=name, value=entry.get(name),
                            allowed=allowed)
    if "bytes" in entry and "per_rank_bytes" in entry:
        raise SpecError(f"{where}: give bytes or per_rank_bytes, not both", file=file, field="per_rank_bytes")
    sizes = "per_rank_bytes" if "per_rank_bytes" in entry else "bytes"
    lo, hi = _range(entry, sizes, 0, file, where)
    channels = entry.get("channels", -1)
    if not isinstance(channels, int) or isinstance(channels, bool) or (channels < 1 and channels != -1):
        raise SpecError(f"{where}: must be -1 (NCCL's own) or a positive count", file=file, field="channels",
                        value=channels)
    return TunerRule(entry["collective"], entry["algorithm"], entry["protocol"], lo, hi, per_rank=sizes != "bytes",
                     nodes=_range(entry, "nodes", 1, file, where), ranks=_range(entry, "ranks", 1, file, where),
                     ranks_per_node=_range(entry, "ranks_per_node", 1, file, where), channels=channels, line=number)


def _range(entry: dict, name: str, least: int, file: str, where: str) -> tuple[int, int]:
    if name not in entry:
        return (least, ANY[1])
    value = entry[name]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or value[0] < least or value[0] > value[1]):
        raise SpecError(f"{where}: must be [min, max], integers, {least} <= min <= max (inclusive)", file=file,
                        field=name, value=value)
    return (value[0], value[1])


def _integer(token: str, name: str, where: str, least: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise SpecError(f"'{token}' is not an integer", file=where, field=name, value=token) from None
    if value < least:
        raise SpecError(f"must be >= {least}", file=where, field=name, value=value)
    return value
