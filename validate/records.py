"""JSONL results: stable config keys, crash-safe appends (flush + fsync), resume, environment info."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from validate import SCHEMA_VERSION


def config_key(kind: str, config: dict, world_size: int, backend: str) -> str:
    """Stable hash of (record kind, config fields, world size, backend): 16 hex digits of SHA-256."""
    blob = json.dumps({"kind": kind, "config": config, "world_size": world_size, "backend": backend},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_records(path: str | Path) -> tuple[list[dict], int]:
    """(records, unreadable line count) of a JSONL file; a missing file has none.

    A line cut short by a crash mid-write is counted as unreadable and otherwise ignored.
    """
    p = Path(path)
    if not p.exists():
        return [], 0
    records, bad = [], 0
    with p.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(rec, dict) and "key" in rec:
                records.append(rec)
            else:
                bad += 1
    return records, bad


def done_keys(path: str | Path, include_errors: bool) -> set[str]:
    """Keys already finished in ``path``: status "ok" (and "error" too if ``include_errors``)."""
    ok = {"ok", "error"} if include_errors else {"ok"}
    return {r["key"] for r in read_records(path)[0] if r.get("status") in ok}


def append_record(path: str | Path, record: dict) -> None:
    """Append one JSON line and make it durable (flush + fsync) before returning."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False, allow_nan=False) + "\n"
    if p.exists() and p.stat().st_size > 0:
        with p.open("rb") as r:
            r.seek(-1, os.SEEK_END)
            if r.read(1) != b"\n":   # previous writer died mid-line: start a fresh line
                line = "\n" + line
    with p.open("ab") as f:
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(backend: str, device: torch.device) -> dict:
    """Run environment (collective: every rank must call it). Hostnames are gathered from all ranks."""
    hostnames: list = [None] * dist.get_world_size()
    dist.all_gather_object(hostnames, socket.gethostname())
    env = {
        "torch_version": torch.__version__,
        "backend": backend,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "world_size": dist.get_world_size(),
        "hostname": hostnames[0],
        "num_nodes": len(set(hostnames)),
        "num_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "platform": sys.platform,
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        env["cuda_version"] = torch.version.cuda
        env["device_count_per_node"] = torch.cuda.device_count()
        if backend == "nccl":
            v = torch.cuda.nccl.version()
            env["nccl_version"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    return env


def make_record(kind: str, key: str, env: dict, body: dict) -> dict:
    """Assemble a record: schema_version, kind, key, created_utc, env, then the benchmark body."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "key": key,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "env": env,
        **body,
    }
