"""NCCL_ALGO / NCCL_PROTO as the NCCL release in force parses them (session 16 algosyntax; docs/collectives-history.md
"Session 16 (algosyntax)"): `algo_lists` and `proto_lists` give {collective: the list the variable sets for it}.

- At 2.24.3 on (nccl_code_rules.toml [nccl_env_per_collective]) NCCL's parseList reads a classic list ("ring,tree",
  "^nvls"; no ':' or ';') as the first clause of a per-collective string (v2.24.3-1 src/graph/tuning.cc parseList,
  l. 53-110, same in effect to v2.30.7-1): one path, `_clauses`, so a name NCCL does not know fails, 'collnet' (NCCL
  2.5-2.13's name) included. Per-collective clauses ("ring;allreduce:tree,ring;broadcast:ring", '^' per clause) are
  read there too. With the release unset the classic list is read as it always was (nccl.parse_nccl_algo), clause
  strings as 2.30.7 reads them; its 'collnet' stays moesim's documented alias for both CollNets (the `--nccl-algo`
  help, docs/collectives.md), now with a warning that NCCL 2.24.3 on fails the name (session 18 ncclleft).
- At 2.18.1 .. 2.23.4 parseList reads the whole string, classic or not, as one list (v2.18.1-1 / v2.23.4-1
  src/graph/tuning.cc parseList l. 34-53: a leading '^', ','-separated names, strcasecmp against ncclAlgoStr, a name
  it does not know ignored), so a clause such as "allreduce:tree", 'collnet', a typo, or 'pat' before 2.23.4 (no
  NCCL_ALGO_PAT: v2.22.3-1 src/init.cc l. 40) names nothing; `ignored_names` lists them (TopologyModel warns).
  NCCL_PROTO is read the same way there, classic or not (ncclProtoStr: LL, LL128, Simple; any other name ignored
  with a warning: proto_lists; session 17 tunerver).
  ncclTopoTuneModel then, where CollNet is not supported (collNetSupport == 0), turns NVLSTree off on one node and NVLS
  off across nodes, and re-enables ring and tree where ring, tree, NVLS and NVLSTree are all off ("If user has hard
  set NCCL_ALGO=COLLNET, ignore it": v2.18.1-1 l. 250-262, v2.19.1-1 l. 265-277, v2.23.4-1 l. 303-314).
"""

from __future__ import annotations

import warnings

from moesim.collectives import nccl
from moesim.collectives.nccl_code_rules import rule
from moesim.collectives.nccl_tuner_rules import PROTOCOLS, TUNER_OPS, parse_nccl_proto
from moesim.errors import SpecError

OTHER = ""  # the key read for a collective NCCL_ALGO does not restrict (all-to-all, send/recv run NCCL's p2p)
FUNCTIONS = ("broadcast", "reduce", "allgather", "reducescatter", "allreduce")  # v2.24.3-1 src/init.cc ncclFuncStr
_NCCL_ALGOS = ("tree", "ring", "collnetdirect", "collnetchain", "nvls", "nvlstree", "pat")  # ncclAlgoStr, lower case
_OPS = tuple(op for op in TUNER_OPS.values() if op is not None)  # all_gather, reduce_scatter, all_reduce, broadcast
_SET_ONE = ("ring", "tree", "nvls", "nvlstree")  # ncclTopoTuneModel's test before re-enabling ring and tree


def has_clauses(text: str | None) -> bool:
    """Whether `text` uses the per-collective syntax (a ':' or a ';')."""
    return bool(text) and (":" in text or ";" in text)


def per_collective(version: str) -> bool:
    """Whether NCCL at `version` ("": unset, 2.30.7's rule) reads per-collective clauses."""
    return rule("nccl_env_per_collective", version)


def algo_lists(text: str | None, version: str = "", collnet: bool = False,
               multi_node: bool = False) -> dict[str, frozenset[str]]:
    """{collective: the algorithms NCCL_ALGO `text` enables for it} for all_reduce, all_gather, reduce_scatter,
    broadcast, and OTHER for the rest, as NCCL at `version` parses it (module doc), for a communicator over one node or
    several (`multi_node`: the re-enabling test before 2.24.3 reads NVLS or NVLSTree by it). A collective's set may be
    empty (NCCL fails that call only: nccl_no_pick.no_algorithm)."""
    if not text or (not version and not has_clauses(text)):
        every = nccl.parse_nccl_algo(text)  # unset release (or no NCCL_ALGO): the classic list as it always was
        return {op: every for op in (*_OPS, OTHER)}
    if per_collective(version):
        out = {op: frozenset(nccl.ALGORITHMS) for op in (*_OPS, OTHER)}
        found = _clauses(text)
        out.update(found)
        if not has_clauses(text):  # a classic list: its one clause is every collective's list, as parse_nccl_algo's was
            out[OTHER] = found[_OPS[0]]
        return out
    chosen = _one_list(text, "NCCL_ALGO", nccl.ALGORITHMS, version)
    if not collnet:  # v2.23.4-1 src/graph/tuning.cc l. 303-314 (collNetSupport == 0; v2.18.1-1 l. 250-262)
        running = chosen - {"nvls" if multi_node else "nvlstree"}  # NVLS off across nodes, NVLSTree on one node
        if not running & set(_SET_ONE):
            chosen |= {"ring", "tree"}
    return {op: chosen for op in (*_OPS, OTHER)}


def algo_lists_by_nodes(text: str | None, version: str = "", collnet: bool = False) -> dict[bool, dict]:
    """{multi_node: algo_lists(...)}: before 2.24.3 the lists depend on the node count (NVLS / NVLSTree in the
    re-enabling test); with a warning naming what the release ignores (v2.23.4-1 src/graph/tuning.cc parseList
    l. 34-53: a name strcasecmp matches to nothing)."""
    one = algo_lists(text, version, collnet)
    _warn_alias(text, version)
    by_nodes = version and not per_collective(version)  # 2.18.1-2.23.4 only
    _warn_ignored("NCCL_ALGO", "algorithm", text, version, ignored_names(text, version))
    return {False: one, True: algo_lists(text, version, collnet, True) if by_nodes else one}


def ignored_names(text: str | None, version: str) -> tuple[str, ...]:
    """The NCCL_ALGO names NCCL at `version` reads and ignores: before 2.24.3 a name not in that release's
    ncclAlgoStr (a clause token, 'collnet', a typo, 'pat' before 2.23.4; module doc); none from 2.24.3 or unset."""
    if not text or not version or per_collective(version):
        return ()
    return _unknown(text, _algo_names(version))


def _warn_alias(text: str | None, version: str) -> None:
    """One warning where a classic list read with the release unset names an alias of nccl.ALIASES ('collnet', NCCL
    2.5-2.13's name): moesim keeps its documented reading, NCCL 2.24.3 on fails the name (v2.30.7-1 src/graph/tuning.cc
    l. 109 "Unrecognized element token", ncclInvalidUsage) and 2.18.1-2.23.4 ignore it (parseList l. 34-53)."""
    if not text or version or has_clauses(text):
        return
    aliased = dict.fromkeys(t.lower() for t in _tokens(text) if t.lower() in nccl.ALIASES)
    if aliased:
        read = "; ".join(f"'{a}' as {','.join(nccl.ALIASES[a])}" for a in aliased)
        warnings.warn(f"NCCL_ALGO '{text}': moesim reads {read} (NCCL 2.5-2.13's name), but NCCL 2.24.3 on fails "
                      f"the string and 2.18.1-2.23.4 ignore the name; name the algorithms for a current NCCL")


def _warn_ignored(env: str, kind: str, text: str, version: str, ignored: tuple[str, ...]) -> None:
    """One warning line naming the `ignored` names of `env` that NCCL `version` (2.18.1-2.23.4) skips in parseList."""
    if ignored:
        warnings.warn(f"{env} '{text}': NCCL {version} ignores {', '.join(repr(t) for t in ignored)} (not one of its "
                      f"{kind} names; NCCL 2.24.3 on fails the string)")


def _unknown(text: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """parseList's tokens before 2.24.3 (_tokens) that strcasecmp matches to none of `known`."""
    lower = {name.lower() for name in known}
    return tuple(t for t in _tokens(text) if t.lower() not in lower)


def proto_lists(text: str | None, version: str = "") -> dict[str, frozenset[str]]:
    """nccl_tuner_rules.parse_nccl_proto's {collective: protocols}, except that at 2.18.1 .. 2.23.4 every string,
    classic or with clauses, is one list for every collective as parseList reads it there: a name that is not LL,
    LL128 or Simple (a typo, a clause token) ignored with a warning, as NCCL_ALGO's (v2.18.1-1 src/graph/tuning.cc
    l. 242 / v2.23.4-1 l. 295 `parseList(protoStr, ncclProtoStr, NCCL_NUM_PROTOCOLS, protoEnable)`); the list may be
    empty (nothing enabled: nccl_no_pick.no_algorithm decides)."""
    if not text or not version or per_collective(version):
        return parse_nccl_proto(text)
    _warn_ignored("NCCL_PROTO", "protocol", text, version, _unknown(text, PROTOCOLS))
    chosen = _one_list(text, "NCCL_PROTO", PROTOCOLS, version)
    return {op: chosen for op in _OPS}


def one_list_note(model) -> str:
    """The tail of nccl_no_pick's error where NCCL at the model's release reads a clause string as one list."""
    said = [(env, text) for env, text in (("NCCL_ALGO", model.nccl_algo), ("NCCL_PROTO", model.nccl_proto))
            if has_clauses(text) and not per_collective(model.nccl_version)]
    return "".join(f"; NCCL {model.nccl_version} reads {env} '{text}' as one list (per-collective clauses from "
                   f"2.24.3) and ignores the names holding ':' or ';'" for env, text in said)


def _algo_names(version: str) -> tuple[str, ...]:
    """ncclAlgoStr at `version`, lower case: six names at v2.18.1-1 .. v2.22.3-1 (src/init.cc l. 38 / 40), PAT added
    at v2.23.4-1 (src/init.cc l. 40; nccl_code_rules.toml [pat_available])."""
    return _NCCL_ALGOS if rule("pat_available", version) else tuple(a for a in _NCCL_ALGOS if a != "pat")


def _tokens(text: str) -> list[str]:
    """parseList's tokens before 2.24.3: one leading '^' dropped, ','-separated (strtok: empty ones skipped); moesim
    trims spaces around each, as its classic list always has."""
    return [t.strip() for t in text[text.startswith("^"):].split(",") if t.strip()]


def _one_list(text: str, env: str, names: tuple[str, ...], version: str) -> frozenset[str]:
    """v2.23.4-1 src/graph/tuning.cc parseList (l. 34-53): a leading '^' excludes, ','-separated names; a name not
    in that release's ncclAlgoStr / ncclProtoStr is ignored, as NCCL ignores it (ignored_names, proto_lists)."""
    exclude = text.startswith("^")
    by_lower = {n.lower(): n for n in names}
    known = _algo_names(version) if env == "NCCL_ALGO" else tuple(by_lower)
    named: set[str] = set()
    for token in _tokens(text):
        name = token.lower()
        if name not in known:
            continue  # NCCL's strcasecmp matches no element: nothing set
        named.add(by_lower[name])
    return frozenset(names) - named if exclude else frozenset(named)


def _clauses(text: str) -> dict[str, frozenset[str]]:
    """v2.24.3-1 src/graph/tuning.cc parseList (same in effect at v2.30.7-1): ';'-separated clauses (empty ones
    skipped, strtok), each "prefix:list" (a third ':' part ignored); only the first clause of the string may lack its
    prefix (it then sets every function); '^' starts an excluding list; each clause first resets its functions' whole
    list; an unknown prefix or name fails (ncclInvalidUsage). Names and prefixes case-insensitive, spaces trimmed."""
    env, field = "NCCL_ALGO", "nccl_algo"
    out: dict[str, frozenset[str]] = {}
    for index, clause in enumerate(text.split(";")):
        parts = [p for p in clause.split(":") if p]
        if not parts:
            if clause:  # ':' alone: NCCL dereferences a null list here; moesim says so
                raise SpecError(f"{env} clause '{clause}' names no collective and no list", field=field, value=text,
                                allowed=FUNCTIONS)
            continue
        if len(parts) == 1:
            if ":" in clause and parts[0].strip().lower() in FUNCTIONS:  # NCCL reads it as a list: an unknown name
                raise SpecError(f"{env} clause '{clause}' names the collective '{parts[0].strip()}' and no list "
                                f"('{parts[0].strip()}:tree,ring')", field=field, value=text, allowed=nccl.ALGORITHMS)
            if index:
                raise SpecError(f"{env} clause '{clause}': every clause but the first names its collective "
                                f"('allreduce:tree')", field=field, value=text, allowed=FUNCTIONS)
            prefix, items = None, parts[0]
        else:
            prefix, items = parts[0].strip(), parts[1]
            if prefix.lower() not in FUNCTIONS:
                raise SpecError(f"{env} clause '{clause}': unknown collective '{prefix}'", field=field, value=text,
                                allowed=FUNCTIONS)
        items = items.strip()
        exclude = items.startswith("^")
        named = set()
        for token in (t.strip() for t in items[exclude:].split(",")):
            if not token:
                continue
            if token.lower() not in _NCCL_ALGOS:  # 'collnet' (2.5-2.13) too: NCCL 2.24.3 on fails it
                raise SpecError(f"{env} clause '{clause}': unknown algorithm '{token}'", field=field, value=text,
                                allowed=nccl.ALGORITHMS)
            named.add(token.lower())
        chosen = frozenset(nccl.ALGORITHMS) - named if exclude else frozenset(named)
        for op in _OPS if prefix is None else (TUNER_OPS[prefix.lower()],):
            if op is not None:  # NCCL's reduce: moesim has no reduce collective
                out[op] = chosen
    return out
