"""Ranks exit when their launcher or rank 0 goes away, so a killed run never keeps writing.

torchrun starts its workers in new sessions: killing torchrun's process group (a scheduler's
cancel, Ctrl-C on a wrapper script) leaves the ranks running, and rank 0 keeps appending records
to ``--out`` while a rerun writes the same file (issue #14). Each rank runs a daemon thread that
polls, every ``POLL_S``:

- its parent process: when the launcher (torchrun's agent, or the ``mp.spawn`` parent) dies the
  rank is re-parented, ``os.getppid()`` changes, and the rank exits;
- rank 0, when it runs on the same host: when its process is gone (or a zombie) the rank exits.
  A rank 0 on another host is covered by the collective timeout (``--timeout-s``).

Exiting is ``os._exit(EXIT_ORPHANED)``: no further collective, no record written.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

POLL_S = 0.5
EXIT_ORPHANED = 3


def process_alive(pid: int) -> bool:
    """`pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line.split(":", 1)[1].split()[0]
    except OSError:
        pass
    return True


def _stop(rank: int, why: str) -> None:
    print(f"[validate] rank {rank}: {why}; exiting without writing", file=sys.stderr, flush=True)
    os._exit(EXIT_ORPHANED)


def start_watch(rank: int, rank0_pid: int | None = None, *, poll_s: float = POLL_S) -> threading.Thread:
    """Start the watch thread of this rank (`rank0_pid`: rank 0's pid when it runs on this host)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            threading.Event().wait(poll_s)
            if os.getppid() != parent:
                _stop(rank, f"the launcher (pid {parent}) is gone")
            if rank0_pid is not None and rank0_pid != os.getpid() and not process_alive(rank0_pid):
                _stop(rank, f"rank 0 (pid {rank0_pid}) is gone")

    thread = threading.Thread(target=watch, name="validate-watch", daemon=True)
    thread.start()
    return thread
