"""NCCL_PROTO and tuner-plugin rules: what a cluster's NCCL set-up forces on the tuner's (algorithm, protocol) pick.

`parse_nccl_proto`: NCCL_PROTO syntax ("LL128,Simple" keeps those, "^LL" drops LL; not case-sensitive).
Source: NCCL env.rst, NCCL_PROTO ("comma-separated list of protocols (not case-sensitive) among LL, LL128,
Simple"; a leading ^ excludes). TopologyModel(nccl_proto=...) restricts the candidates of the collectives
NCCL's tuner prices (all-reduce, all-gather, reduce-scatter, broadcast). Send/recv-based ops (all-to-all,
send/recv) keep their own rule (protocols.p2p_protocol): NCCL's enqueue.cc picks their protocol from the
peer's LL buffer and NCCL_P2P_LL_THRESHOLD, not through the tuner.

`load_tuner_rules`: a tuner-plugin configuration in the CSV format of NCCL's example tuner plugin
(NVIDIA/nccl ext-tuner/example, README.md and plugin.c), one rule a line:
    collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks[,numPipeOps[,regBuff]]
collective_type: broadcast, reduce, allgather, reducescatter, allreduce; algorithm: tree, ring, collnet_direct,
collnet_chain, nvls, nvls_tree, pat; protocol: ll, ll128, simple; channels, nNodes, nRanks, numPipeOps, regBuff:
-1 = any (channels: NCCL's own). '#' starts a comment line; blank lines and the column-title line are skipped.
The file is NCCL's format, read as is, so it carries no schema_version: its 8, 9 or 10 fields are the version.
Matching as plugin.c `pluginGetCollInfo`: the collective, min_bytes <= bytes <= max_bytes (bytes as nccl-tests
and NCCL's tuner count them: the whole buffer of an all-gather / reduce-scatter), nNodes and nRanks exact or
-1. The first matching rule whose (algorithm, protocol) the model can run here (and NCCL_ALGO / NCCL_PROTO
allow) is taken instead of NCCL's own pick; a rule that cannot run is passed over, as the plugin passes over a
cost-table entry NCCL marked IGNORE; no rule: NCCL's own pick.
What moesim does not model, and how the rules meet it: a collective call here is one operation with
unregistered buffers (numPipeOps 1, regBuff 0), so rules asking for other values never match; `channels` is
read and checked but does not change the time (moesim prices NCCL's own channel count); 'reduce' is read but
moesim has no reduce collective. nNodes is the number of NVLink domains the group spans (moesim's node;
on a multi-node NVLink rack NCCL counts hosts).
Strict loader: any other value fails with one line naming the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def parse_nccl_proto(text: str | None) -> frozenset[str]:
    """The protocols NCCL_PROTO enables: "LL128,Simple" keeps those, "^LL" drops LL; "" keeps all three.
    Source: NCCL env.rst (NCCL_PROTO: LL, LL128, Simple, not case-sensitive; a leading ^ excludes)."""
    if not text:
        return frozenset(PROTOCOLS)
    by_lower = {p.lower(): p for p in PROTOCOLS}
    exclude = text.startswith("^")
    names = [t.strip().lower() for t in text.lstrip("^").split(",") if t.strip()]
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


@dataclass(frozen=True)
class TunerRule:
    """One line of a tuner-plugin CSV: for `op` between min_bytes and max_bytes (inclusive) on `nodes` nodes and
    `ranks` ranks (-1: any), run `algorithm` with `protocol` (moesim's names)."""

    op: str | None  # moesim's collective; None: NCCL's reduce (never matches here)
    min_bytes: int
    max_bytes: int
    algorithm: str
    protocol: str
    channels: int = -1  # -1: NCCL's own (read and checked; not priced)
    nodes: int = -1
    ranks: int = -1
    pipe_ops: int = -1
    reg_buff: int = -1
    line: int = 0  # the line of the file it was read from (0: built in code)

    def matches(self, op: str, size_bytes: float, nodes: int, ranks: int) -> bool:
        """plugin.c's test: collective, size range, nNodes, nRanks, numPipeOps, regBuff (-1 any)."""
        return (self.op == op and self.min_bytes <= size_bytes <= self.max_bytes
                and self.nodes in (-1, nodes) and self.ranks in (-1, ranks)
                and self.pipe_ops in (-1, PIPE_OPS) and self.reg_buff in (-1, REG_BUFF))


@dataclass(frozen=True)
class TunerRules:
    """A cluster's tuner-plugin rules, in file order (the first one that applies wins)."""

    rules: tuple[TunerRule, ...]
    source: str = ""  # the file they were read from

    def matching(self, op: str, size_bytes: float, nodes: int, ranks: int) -> tuple[TunerRule, ...]:
        return tuple(r for r in self.rules if r.matches(op, size_bytes, nodes, ranks))

    def ops(self) -> frozenset[str]:
        return frozenset(r.op for r in self.rules if r.op is not None)


def load_tuner_rules(path: str | Path) -> TunerRules:
    """Read a tuner-plugin CSV (NCCL's example plugin format, module docstring); SpecError naming the file, line
    and field on anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("tuner rules file not found", file=str(path), field="tuner_rules") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read the tuner rules file: {err}", file=str(path), field="tuner_rules") from None
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = [t.strip() for t in line.split(",")]
        if tokens == list(FIELDS[:len(tokens)]) and len(tokens) >= 8:  # the column-title line
            continue
        rules.append(_rule(tokens, f"{path}:{number}", number))
    return TunerRules(tuple(rules), str(path))


def _rule(tokens: list[str], where: str, number: int) -> TunerRule:
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
    counts = [_integer(tokens[i], FIELDS[i], where, -1) if i < len(tokens) else -1 for i in range(5, 10)]
    for name, value in zip(FIELDS[5:], counts):
        if value == 0 and name != "regBuff":
            raise SpecError("must be -1 (any) or a positive count", file=where, field=name, value=value)
    if counts[4] not in (-1, 0, 1):
        raise SpecError("must be -1 (any), 0 or 1", file=where, field="regBuff", value=counts[4], allowed=(-1, 0, 1))
    return TunerRule(TUNER_OPS[coll], lo, hi, TUNER_ALGORITHMS[algo], TUNER_PROTOCOLS[proto], *counts, line=number)


def _integer(token: str, name: str, where: str, least: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise SpecError(f"'{token}' is not an integer", file=where, field=name, value=token) from None
    if value < least:
        raise SpecError(f"must be >= {least}", file=where, field=name, value=value)
    return value
