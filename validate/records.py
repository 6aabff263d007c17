"""JSONL results: stable config keys, crash-safe keyed appends (flock + flush + fsync), resume, environment info."""

from __future__ import annotations

import datetime
import fcntl
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


def parse_jsonl_lines(data: bytes, source: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """([(line number, JSON object)], [warning per skipped line]) of JSONL bytes.

    The same rules, and the same warning text, as moesim's reader (`moesim/jsonl.py`; a test
    keeps the two in step): a line cut short by a crash, a corrupt or non-UTF-8 line, a line that
    is not a JSON object is skipped with `FILE:LINE: skipped ...`. Kept here, standard library only,
    so that the ranks do not import moesim (its package import takes seconds).
    """
    objects, warnings = [], []
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        cut = number == len(lines)  # no newline after it: the last write did not finish
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            warnings.append(f"{source}:{number}: skipped a line that is not UTF-8 (byte {err.start})")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            why = "cut short (a write did not finish)" if cut else f"not valid JSON ({err.msg} at column {err.colno})"
            warnings.append(f"{source}:{number}: skipped a line {why}")
            continue
        except RecursionError:
            warnings.append(f"{source}:{number}: skipped a line nested too deeply")
            continue
        if not isinstance(obj, dict):
            warnings.append(f"{source}:{number}: skipped a line that is not a JSON object")
            continue
        objects.append((number, obj))
    return objects, warnings


def read_records(path: str | Path) -> tuple[list[dict], int]:
    """(records, unreadable line count) of a JSONL file; a missing file has none.

    A line cut short by a crash mid-write, a corrupt or non-UTF-8 line, or an object without a
    "key" is skipped with a warning on stderr naming the file and the line (`parse_jsonl_lines`).
    """
    p = Path(path)
    if not p.exists():
        return [], 0
    objects, warnings = parse_jsonl_lines(p.read_bytes(), str(p))
    records = []
    for number, rec in objects:
        if "key" in rec:
            records.append(rec)
        else:
            warnings.append(f"{p}:{number}: skipped a record without a 'key'")
    for message in warnings:
        print(f"[validate] warning: {message}", file=sys.stderr, flush=True)
    return records, len(warnings)


def done_keys(path: str | Path, include_errors: bool) -> set[str]:
    """Keys already finished in ``path``: status "ok" (and "error" too if ``include_errors``)."""
    ok = {"ok", "error"} if include_errors else {"ok"}
    return {r["key"] for r in read_records(path)[0] if r.get("status") in ok}


def _ok_keys(data: bytes) -> set[str]:
    """Keys with a status "ok" record in the JSONL bytes ``data`` (unreadable lines ignored, silently)."""
    return {rec["key"] for _, rec in parse_jsonl_lines(data, "")[0]
            if rec.get("status") == "ok" and isinstance(rec.get("key"), str)}


def append_record(path: str | Path, record: dict) -> bool:
    """Append one JSON line and make it durable (flush + fsync); False (nothing written) when the
    record's key already has a status "ok" record in the file.

    The check and the append happen under an exclusive ``flock`` on the file, so two writers on one
    ``--out`` (a run left behind by a killed launcher and its rerun) never write a key twice. An
    "error" record may be followed by an "ok" one for the same key (a retried configuration).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False, allow_nan=False) + "\n"
    with p.open("a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            data = f.read()
            if record.get("key") in _ok_keys(data):
                return False
            if data and not data.endswith(b"\n"):   # previous writer died mid-line: start a fresh line
                line = "\n" + line
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return True


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
