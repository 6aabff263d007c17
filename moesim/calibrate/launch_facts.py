"""How an nccl-tests run was launched, as its own job script states it: facts of the host side that a per-call cost of
one process driving many GPUs would need (docs/collectives-history.md, "Session 14 (g8)"). Read from a logs.toml
entry (moesim/calibrate/nccl_table.py); absent = not stated. Nothing prices them: no figure for the cost of sharing
one core among NCCL's proxy threads was found in a source (the section above), so they are kept as facts only, and a
mechanism that needs one of them must not act where an entry does not state it.

- processes_per_node: processes the launcher starts on each node (Slurm `--ntasks-per-node`, `mpirun -np` over the
  nodes). With `gpus_per_thread` (nccl-tests -g N) it gives the GPUs one process drives.
- bind_to: the CPU binding the launch command asks for. "default" = the command gives no binding flag (no
  `--bind-to` / `--map-by` / `-c` / `--cpus-per-task` / `--cpu-bind`), so the launcher's own default applies, which
  the log does not print; otherwise the `--bind-to` object the command names ("none", "core", ...).
- cores_per_process: the cores one process may run on, only where the source prints it (`--report-bindings`, an
  NCCL INFO "Affinity for GPU" line, `-c N` with a binding that honours it). A documented launcher default is not a
  statement about the run: an entry with bind_to = "default" does not get this key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from moesim.errors import SpecError

LAUNCH_FACT_KEYS = ("processes_per_node", "bind_to", "cores_per_process")
# Open MPI's --bind-to objects (mpirun(1), v4.1: none, hwthread, core, l1cache, l2cache, l3cache, socket, numa, board;
# v5: "package" for socket), plus "default" for a command that names none.
BIND_TO_VALUES = ("default", "none", "hwthread", "core", "l1cache", "l2cache", "l3cache", "socket", "package", "numa",
                  "board")


@dataclass(frozen=True)
class LaunchFacts:
    processes_per_node: int | None = None
    bind_to: str | None = None
    cores_per_process: int | None = None

    def stated_cores(self) -> int | None:
        """The cores one process runs on, where the source states them; None = not stated (nothing may assume it)."""
        return self.cores_per_process


def _count(entry: Mapping, key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{key} must be an integer >= 1, got {value!r}", file=where or None, field=key, value=value)
    return value


def launch_facts(entry: Mapping, where: str = "") -> LaunchFacts:
    """The launch-fact keys of a logs.toml entry, checked; a SpecError names the entry, the field and the values."""
    bind_to = entry.get("bind_to")
    if bind_to is not None and bind_to not in BIND_TO_VALUES:
        raise SpecError(f"bind_to '{bind_to}' is not allowed", file=where or None, field="bind_to", value=bind_to,
                        allowed=BIND_TO_VALUES)
    facts = LaunchFacts(_count(entry, "processes_per_node", where), bind_to, _count(entry, "cores_per_process", where))
    if facts.cores_per_process is not None and bind_to in (None, "default", "none"):
        raise SpecError("cores_per_process needs the binding the source states (bind_to a --bind-to object)",
                        file=where or None, field="cores_per_process", value=facts.cores_per_process,
                        allowed=BIND_TO_VALUES[2:])
    return facts
