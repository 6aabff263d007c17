"""The per-log error table of docs/collectives.md: the shipped priors against the public nccl-tests logs of a
manifest (tests/data/nccl/logs.toml), and calibration on one log of a cluster against its other logs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from moesim.calibrate.launch_facts import LAUNCH_FACT_KEYS, launch_facts
from moesim.calibrate.nccl_error import pct
from moesim.calibrate.nccl_tests import read_nccl_tests, read_nccl_version
from moesim.collectives.nccl_channels import CHANNEL_KNOBS, check_channel_knob
from moesim.errors import SpecError
from moesim.paths import builtin_names, read_versioned_toml
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import SYSTEM_FACT_KEYS, system_facts, with_system_facts

MANIFEST_KEYS = {"file", "hardware", "cluster", "healthy", "shape", "note", "op", "ranks", "nccl_algo", "collnet",
                 "gpus_per_thread", "nccl_proto"}
FORCED_KEYS = ("nccl_algo", "nccl_proto")  # set as the run set them: the entry is priced off the default model
# NCCL_MIN_NCHANNELS / NCCL_MAX_NCHANNELS / NCCL_NVLS_NCHANNELS as the run set them (collectives/nccl_channels.py)
FORCED_KEYS += CHANNEL_KNOBS
MANIFEST_KEYS |= set(CHANNEL_KNOBS)
# host_cpu, gpu_nic_path: facts of the cluster's system read from its own report, set over the shared profile
# (moesim/specs/system_facts.py); absent = not stated
MANIFEST_KEYS |= set(SYSTEM_FACT_KEYS)
# nccl_version: the NCCL release the run used ("2.28.9"), where a cited source states it and the log prints no banner
# (a log's own "NCCL version" line wins; the two must agree: entry_nccl_version; session 12 ncclver)
MANIFEST_KEYS |= {"nccl_version"}
# processes_per_node, bind_to, cores_per_process: how the run was launched, as its job script states it; facts only,
# nothing prices them (moesim/calibrate/launch_facts.py; session 14 g8)
MANIFEST_KEYS |= set(LAUNCH_FACT_KEYS)


# The type of each manifest key read here (a key of MANIFEST_KEYS not listed is checked where it is read);
# the first six are required.
MANIFEST_TYPES = {"file": str, "hardware": str, "cluster": str, "healthy": bool, "shape": bool, "note": str,
                  "op": str, "ranks": int, "gpus_per_thread": int, "nccl_algo": str, "nccl_proto": str, "collnet": bool,
                  "nccl_version": str}
REQUIRED_KEYS = ("file", "hardware", "cluster", "healthy", "shape", "note")


def read_manifest(path: Path) -> list[dict]:
    """The [[log]] entries of a logs.toml (schema_version 1, strict keys and values); a SpecError names the entry."""
    data = read_versioned_toml(path)
    entries = data.get("log")
    if set(data) - {"schema_version", "log"} or not isinstance(entries, list) or \
            not all(isinstance(e, dict) for e in entries):
        raise SpecError("a manifest holds schema_version and [[log]] tables only", file=str(path), field="log",
                        allowed=("schema_version", "[[log]]"))
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: log {number} ({entry.get('file', 'no file')})"
        unknown = set(entry) - MANIFEST_KEYS
        if unknown:
            raise SpecError(f"unknown keys {sorted(unknown)}", file=where, allowed=tuple(sorted(MANIFEST_KEYS)))
        _check_entry(entry, where)
        system_facts(entry, where)
        launch_facts(entry, where)
        _check_version(entry.get("nccl_version", ""), where)
        for name in CHANNEL_KNOBS:
            check_channel_knob(name, entry.get(name), file=where)
    return entries


def _check_entry(entry: dict, where: str) -> None:
    """The entry's required keys, their types, and the values the readers take (collective, counts, NCCL_*)."""
    from moesim.calibrate.nccl_tests import NCCL_TESTS_OPS
    from moesim.collectives.nccl_env_lists import algo_lists, proto_lists
    from moesim.collectives.nccl_tuning import releases

    for key in REQUIRED_KEYS:
        if key not in entry:
            raise SpecError("required key is missing", file=where, field=key)
    for key, kind in MANIFEST_TYPES.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise SpecError(f"expected {kind.__name__}, got {value!r}", file=where, field=key, value=value)
    profiles = builtin_names("hardware_profiles")
    if entry["hardware"] not in profiles:
        raise SpecError(f"unknown hardware profile '{entry['hardware']}' (a manifest names shipped profiles)",
                        file=where, field="hardware", value=entry["hardware"], allowed=profiles)
    for key in ("ranks", "gpus_per_thread"):
        if key in entry and entry[key] < 1:
            raise SpecError(f"must be >= 1, got {entry[key]}", file=where, field=key, value=entry[key])
    if "op" in entry and entry["op"] not in NCCL_TESTS_OPS.values():
        raise SpecError(f"unknown collective '{entry['op']}'", file=where, field="op", value=entry["op"],
                        allowed=tuple(NCCL_TESTS_OPS.values()))
    version = entry.get("nccl_version", "")
    version = version if version in releases() else ""  # a bad one fails in _check_version, named there
    for key, parse in (("nccl_algo", algo_lists), ("nccl_proto", proto_lists)):
        if key in entry:
            try:
                parse(entry[key], version)  # the syntax of the run's release (per-collective clauses: 2.24.3 on)
            except SpecError as err:
                raise err.in_file(where) from None


def _check_version(version: str, where: str) -> None:
    from moesim.collectives.nccl_tuning import check_version

    try:
        check_version(version)
    except SpecError as err:
        raise SpecError(err.message, file=where, field="nccl_version", value=version, allowed=err.allowed) from None


def entry_nccl_version(folder: Path, entry: dict) -> str:
    """The NCCL release a log ran: its own banner (nccl_tests.read_nccl_version), else the entry's nccl_version; ""
    where neither states it. A banner and an entry that disagree are an error naming the file."""
    own, stated = read_nccl_version(folder / entry["file"]), entry.get("nccl_version", "")
    if own and stated and own != stated:
        raise SpecError(f"logs.toml says nccl_version {stated} but the log prints NCCL {own}", file=entry["file"],
                        field="nccl_version", value=stated, allowed=(own,))
    return own or stated


def entry_hardware(entry: dict, hardware=None):
    """The profile a log is priced with: its `hardware` (or the given profile) with the entry's system facts."""
    return with_system_facts(hardware or load_hardware(entry["hardware"]), system_facts(entry))


def _size(nbytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"


def _points(folder: Path, entry: dict):
    return read_nccl_tests(folder / entry["file"], op=entry.get("op"), ranks=entry.get("ranks")).collectives


def entry_model(entry: dict, hardware, nccl_version: str = ""):
    """The model a log is priced with: the default one, or NCCL_ALGO / NCCL_PROTO / NCCL_COLLNET_ENABLE as the run
    set them (manifest keys nccl_algo, nccl_proto, collnet, the CHANNEL_KNOBS), at `nccl_version` where given
    (entry_nccl_version; "" = today's tables); None = the hardware's default model."""
    if not any(k in entry for k in FORCED_KEYS) and not entry.get("collnet", False) and not nccl_version:
        return None
    from moesim.collectives.topo_model import TopologyModel

    return TopologyModel(hardware, nccl_algo=entry.get("nccl_algo", ""), collnet=entry.get("collnet", False),
                         nccl_proto=entry.get("nccl_proto", ""), nccl_version=nccl_version,
                         **{k: entry.get(k) for k in CHANNEL_KNOBS})


def prior_rows(manifest: Path) -> list[tuple]:
    from moesim.calibrate.log_pricing import priced_log

    rows = []
    for e in read_manifest(manifest):
        log = priced_log(manifest.parent, e)
        err, pts = log.error(), log.points
        span = f"{_size(min(p.size_bytes for p in pts))} - {_size(max(p.size_bytes for p in pts))}"
        rows.append((e["file"], e["hardware"], err.ranks, err.op, span, "yes" if e["healthy"] else "no",
                     pct(err.mape_large), pct(err.mape_small),
                     "-" if err.signed_large is None else f"{err.signed_large:+.1%}",
                     ("shape source; " if e["shape"] else "") + e["note"]))
    return rows


@dataclass(frozen=True)
class HeldOutPair:
    """Calibration on one log of a cluster (moesim.calibrate, no bootstrap) and MAPE >= 1 MiB of another."""

    cluster: str
    fitted_on: str
    held_out: str
    weight: float  # the interconnect prior weight the fit used ("auto": √(n / n_eff), prior_weight.py)
    prior_mape: float
    calibrated_mape: float
    fixed_weight_mape: float  # the same fit at fit.LEVEL_PRIOR_WEIGHT, for comparison
    prior_mape_small: float | None = None  # the same below 1 MiB (None: the held-out log has no row there)
    calibrated_mape_small: float | None = None

    @property
    def change(self) -> float:
        return self.calibrated_mape - self.prior_mape


def matrix_clusters(manifest: Path) -> dict[str, list[dict]]:
    """Clusters with two or more healthy logs priced by the default model (no NCCL_ALGO / CollNet forced), one
    hardware profile each: {cluster: entries}."""
    out: dict[str, list[dict]] = {}
    for e in read_manifest(manifest):
        if e["healthy"] and not any(k in e for k in FORCED_KEYS) and not e.get("collnet", False):
            out.setdefault(e["cluster"], []).append(e)
    return {c: logs for c, logs in out.items() if len(logs) >= 2 and len({e["hardware"] for e in logs}) == 1}


def matrix_fit_args(entry: dict) -> dict:
    """calibrate's keywords for a fit on one manifest log as the held-out matrix makes it (no bootstrap, nothing held
    out; the log's collective, ranks, -g and stated system facts)."""
    return dict(bootstrap=0, holdout_fraction=0.0, nccl_op=entry.get("op"), nccl_ranks=entry.get("ranks"),
                gpus_per_thread=entry.get("gpus_per_thread", 1), system=system_facts(entry))


@lru_cache(maxsize=4)
def calibration_matrix(manifest: Path, infer_facts: bool | None = None,
                       latency_per_protocol: bool | str | None = None,
                       transfer_rule: str | None = None, fixed_weight: bool = True,
                       row_weight: str | None = None, clusters: tuple[str, ...] | None = None
                       ) -> tuple[HeldOutPair, ...]:
    """Fit on each log of every matrix cluster in turn, predict every other log of that cluster. `infer_facts`:
    calibrate's inference of unstated system facts (facts_fit.py; None = calibrate's default); `latency_per_protocol`:
    calibrate's hop-latency rule (fit.PROTOCOL_MODES; None = calibrate's default); `transfer_rule`: where calibrate
    writes the fitted figures (transfer.TRANSFER_RULES; None = calibrate's default; session 10, calpairs);
    `fixed_weight` False skips the second fit at fit.LEVEL_PRIOR_WEIGHT (fixed_weight_mape is then NaN: half the time,
    for the held-out rule's checks, which read the automatic weight's pairs only; session 12, heldout); `row_weight`:
    calibrate's `--row-weight` (row_weight.ROW_WEIGHTS; None = calibrate's default; session 16, bandfit); `clusters`:
    only these matrix clusters (None: every one)."""
    from moesim.calibrate.fit import LEVEL_PRIOR_WEIGHT
    from moesim.calibrate.log_pricing import priced_log

    folder = manifest.parent
    out = []
    for cluster, logs in matrix_clusters(manifest).items():
        if clusters is not None and cluster not in clusters:
            continue
        prior = load_hardware(logs[0]["hardware"])
        for fit_on in logs:
            how = dict(infer_facts=infer_facts, latency_per_protocol=latency_per_protocol, transfer_rule=transfer_rule,
                       row_weight=row_weight)
            auto = matrix_fit(manifest, fit_on["file"], **how)
            fixed = matrix_fit(manifest, fit_on["file"], prior_weight=LEVEL_PRIOR_WEIGHT, **how).profile \
                if fixed_weight else None
            for held in logs:
                if held is not fit_on:  # the matrix's logs force no knob: priced by the profile's default model
                    log = priced_log(folder, held, prior)
                    before, after = log.error(), log.on(auto.profile).error()
                    out.append(HeldOutPair(cluster, fit_on["file"], held["file"], auto.fit.level_prior_weight,
                                           before.mape_large, after.mape_large,
                                           log.on(fixed).error().mape_large if fixed is not None else float("nan"),
                                           before.mape_small, after.mape_small))
    return tuple(out)


def calibration_rows(manifest: Path) -> list[tuple]:
    return [(p.cluster, p.fitted_on, f"{p.weight:.3g}", p.held_out, pct(p.prior_mape), pct(p.calibrated_mape),
             f"{100 * p.change:+.2f}", pct(p.fixed_weight_mape), pct(p.prior_mape_small),
             pct(p.calibrated_mape_small)) for p in calibration_matrix(manifest)]


def render(manifest: Path) -> str:
    from moesim.cli.output import table

    head = ["log", "profile", "ranks", "collective", "sizes", "healthy", "MAPE >= 1 MiB", "MAPE < 1 MiB",
            "signed >= 1 MiB", "note"]
    prior = table(prior_rows(manifest), head, align="llrllllrrl")
    cal = table(calibration_rows(manifest), ["cluster", "fitted on", "prior weight", "held out", "prior MAPE >= 1 MiB",
                                             "calibrated", "change (pt)", "calibrated, weight 10", "prior < 1 MiB",
                                             "calibrated < 1 MiB"], align="llrlrrrrrr")
    return "\n".join([
        "## Per-log error of the uncalibrated priors",
        "",
        "busbw error per size = measured time / predicted time - 1, on the faster of the out-of-place and",
        "in-place rows; MAPE over the sizes at or above 1 MiB and below it (moesim/calibrate/nccl_error.py).",
        "Targets: 20 % at >= 1 MiB, 40 % below, on the healthy logs. Generated by",
        "`python docs/make_collectives_table.py` from tests/data/nccl/logs.toml (sources: SOURCES.md there).",
        "",
        "```", prior, "```",
        "",
        "## Calibrating on one log of a cluster, held out: the cluster's other logs",
        "",
        "`moesim calibrate LOG --hardware PROFILE` on one log (no bootstrap, nothing held out of it), then the",
        "MAPE >= 1 MiB of each other healthy log of the same cluster with the prior and with the calibrated",
        "profile. `prior weight`: sqrt(n / n_eff), the factor over each figure's 1 / sigma (moesim/calibrate/",
        "prior_sigma.toml) with which the fit weighed the prior, n_eff the fitted log's effective number of",
        "independent rows from its own residuals (moesim/calibrate/prior_weight.py); `calibrated, weight 10` is",
        "the same fit at the fixed weight 10 of earlier rounds on every figure (chosen on the gj-aion logs, so not",
        "independent of them); the last two columns are the held-out log's MAPE below 1 MiB, prior and calibrated.",
        "",
        "```", cal, "```",
        "",
    ])


def matrix_fit(manifest: Path, file: str, infer_facts: bool | None = None,
               latency_per_protocol: bool | str | None = None, transfer_rule: str | None = None,
               row_weight: str | None = None, prior_weight: float | None = None):
    """calibrate's result for the held-out matrix's fit on the manifest's log `file` (matrix_fit_args, the given
    options; None = calibrate's default), written to a temporary file (the result's profile is the one read back).
    Cached on its arguments (however they are passed): callers must not change the result."""
    return _matrix_fit(manifest, file, infer_facts, latency_per_protocol, transfer_rule, row_weight, prior_weight)


# one matrix's fits (70 logs at two prior weights) and a few more: heldout_pairs / heldout_causes read the fits the
# matrix made instead of fitting again (session 17, citime: 54 s of the calibration tests' CPU)
@lru_cache(maxsize=160)
def _matrix_fit(manifest: Path, file: str, infer_facts, latency_per_protocol, transfer_rule, row_weight, prior_weight):
    from moesim.calibrate import calibrate

    entry = next(e for e in read_manifest(manifest) if e["file"] == file)
    with tempfile.TemporaryDirectory() as tmp:
        return calibrate([str(manifest.parent / file)], entry["hardware"], Path(tmp) / "cal.toml",
                         **matrix_fit_args(entry), infer_facts=infer_facts, latency_per_protocol=latency_per_protocol,
                         transfer_rule=transfer_rule, row_weight=row_weight, prior_weight=prior_weight)
