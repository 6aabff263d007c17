"""The NCCL constants moesim prices with, read at every NCCL version the collected logs ran (issue 11, session 12
ncclver): which differ between those versions and which logs that touches.

Two steps, so the docs block does not need the NCCL sources:
  python scripts/nccl_version_inventory.py --extract /path/to/NVIDIA/nccl/.git   (git show TAG:FILE at each tag of
      TAGS; writes scripts/nccl_version_inventory.toml, the values as read, one table per constant, a row per tag)
  python scripts/nccl_version_inventory.py [--write]   (renders that file and the logs' versions as the markdown block
      of docs/collectives-history.md "Session 12 (ncclver)")

What is read (NVIDIA/nccl, each file at each tag; never copied, only the numbers of the named initializers):
  src/graph/tuning.cc: baseLat / baseLatencies, hwLat / hwLatencies, llMaxBws, perChMaxRingLL128Bws,
    perChMaxTreeLL128Bws, perChMaxTreeBws, perChMaxNVLSTreeBws, treeCorrectionFactor (the numbers of the initializer
    after the name, in order), the ring plateau factors (`minCompCap < 80 ? A : B`), PAT's busBw factor, the compute
    capabilities LL128 is enabled on by default, the network LL128 gate;
  src/include/device.h (src/collectives/device/common.h before 2.19): NCCL_STEPS, MAXCHANNELS, the max threads;
  src/include/comm.h: the thread thresholds; src/init.cc: DEFAULT_BUFFSIZE, the p2p chunk sizes;
  src/transport/nvls.cc: the NVLS channel counts and chunk size.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

DATA = ROOT / "scripts" / "nccl_version_inventory.toml"
DOC = ROOT / "docs" / "collectives-history.md"
TUNING = ROOT / "moesim" / "collectives" / "nccl_tuning.toml"
BEGIN = "<!-- BEGIN nccl_version_inventory: python scripts/nccl_version_inventory.py --write -->"
END = "<!-- END nccl_version_inventory -->"
# every NCCL version a collected log ran (its own line, or logs.toml nccl_version), and 2.30.7 (the tables' source)
# every NCCL release tag from v2.18.1-1 (the oldest version a collected log ran) to v2.30.7-1 (the tables' source)
TAGS = ("v2.18.1-1", "v2.18.3-1", "v2.18.5-1", "v2.18.6-1", "v2.19.1-1", "v2.19.3-1", "v2.19.4-1", "v2.20.3-1",
        "v2.20.5-1", "v2.21.5-1", "v2.22.3-1", "v2.23.4-1", "v2.24.3-1", "v2.25.1-1", "v2.26.2-1", "v2.26.3-1",
        "v2.26.5-1", "v2.26.6-1", "v2.27.3-1", "v2.27.5-1", "v2.27.6-1", "v2.27.7-1", "v2.28.3-1", "v2.28.7-1",
        "v2.28.9-1", "v2.29.2-1", "v2.29.3-1", "v2.29.7-1", "v2.30.3-1", "v2.30.4-1", "v2.30.7-1")
# initializer name(s) in tuning.cc -> the key it is stored under
TABLES = {("baseLat", "baseLatencies"): "base_latency_us", ("hwLat", "hwLatencies"): "hw_latency_us",
          ("llMaxBws",): "ll_max_bws_gb_per_s", ("perChMaxRingLL128Bws",): "per_ch_max_ring_ll128_gb_per_s",
          ("perChMaxTreeLL128Bws",): "per_ch_max_tree_ll128_gb_per_s", ("perChMaxTreeBws",): "per_ch_max_tree_gb_per_s",
          ("perChMaxNVLSTreeBws",): "per_ch_max_nvlstree_gb_per_s", ("treeCorrectionFactor",): "tree_correction"}
# (key, file(s), regex whose group(s) are the value)
DEFINES = (
    ("nccl_steps", ("src/include/device.h", "src/collectives/device/common.h", "src/include/devcomm.h"),
     r"#define NCCL_STEPS (\d+)"),
    ("maxchannels", ("src/include/device.h", "src/include/devcomm.h"), r"#define MAXCHANNELS (\d+)"),
    ("simple_max_nthreads", ("src/include/device.h", "src/include/devcomm.h"), r"#define NCCL_SIMPLE_MAX_NTHREADS (\d+)"),
    ("ll_max_nthreads", ("src/include/device.h", "src/include/devcomm.h"), r"#define NCCL_LL_MAX_NTHREADS (\d+)"),
    ("ll128_max_nthreads", ("src/include/device.h", "src/include/devcomm.h"), r"#define NCCL_LL128_MAX_NTHREADS (\d+)"),
    ("max_nthreads", ("src/include/device.h", "src/include/devcomm.h"), r"#define NCCL_MAX_NTHREADS (\d+)"),
    ("ll_thread_threshold", ("src/include/comm.h",), r"#define NCCL_LL_THREAD_THRESHOLD (\d+)"),
    ("ll128_thread_threshold", ("src/include/comm.h",), r"#define NCCL_LL128_THREAD_THRESHOLD (\d+)"),
    ("simple_thread_threshold", ("src/include/comm.h",), r"#define NCCL_SIMPLE_THREAD_THRESHOLD (\d+)"),
    ("default_buffsize_log2", ("src/init.cc",), r"#define DEFAULT_BUFFSIZE \(1 << (\d+)\)"),
    ("p2p_net_chunksize_log2", ("src/init.cc",), r"\"P2P_NET_CHUNKSIZE\", \(1 << (\d+)\)"),
    ("p2p_nvl_chunksize_log2", ("src/init.cc",), r"\"P2P_NVL_CHUNKSIZE\", \(1 << (\d+)\)"),
    ("nvls_chunksize_kib", ("src/transport/nvls.cc",), r"\"NVLS_CHUNKSIZE\", (\d+) ?\* ?1024"),
    ("nvls_nchannels_sm90", ("src/transport/nvls.cc",), r"#define NVLS_NCHANNELS_SM90 (\d+)|\"NVLS_NCHANNELS\", (\d+)\)"),
    ("nvls_nchannels_sm100", ("src/transport/nvls.cc",), r"#define NVLS_NCHANNELS_SM100 (\d+)"),
    ("nvls_nchannels_sm100_nvl", ("src/transport/nvls.cc",), r"#define NVLS_NCHANNELS_SM100_NVL (\d+)"),
    ("ring_plateau_factor", ("src/graph/tuning.cc",), r"minCompCap < 80 \? ([\d.]+) : ([\d.]+)"),
    ("pat_bw_factor", ("src/graph/tuning.cc",), r"NCCL_ALGO_PAT\) busBw \*= ([\d.]+)"),
    ("net_overhead_us_intel_amd", ("src/graph/tuning.cc",),
     r"VENDOR_INTEL\) return ([\d.]+);\s*if \((?:comm->)?cpuArch == NCCL_TOPO_CPU_ARCH_X86 && (?:comm->)?cpuVendor == "
     r"NCCL_TOPO_CPU_VENDOR_AMD\) return ([\d.]+);"),
    # session 17 (versiongap): the other NCCL figures of nccl_tuning.toml, read at every tag as well
    ("min_traffic_per_channel", ("src/enqueue.cc",), r"constexpr size_t MinTrafficPerChannel = (\d+)(?: << (\d+))?;"),
    ("min_traffic_ll_multiplier", ("src/enqueue.cc",), r"protocol == NCCL_PROTO_LL\) trafficPerByte \*= (\d+);"),
    ("ring_ll_bw_factor", ("src/graph/tuning.cc",),
     r"NCCL_ALGO_RING && p == NCCL_PROTO_LL\)\s*\{?\s*busBw = std::min\(llMaxBw, busBw \* (.+?)\);"),
    ("ring_ll128_bw_factor", ("src/graph/tuning.cc",),
     r"NCCL_ALGO_RING && p == NCCL_PROTO_LL128\)\s*busBw = std::min\(busBw \* \((.+?)\),"),
    ("tree_bw_factor", ("src/graph/tuning.cc",),
     r"if \((a == NCCL_ALGO_TREE(?: && coll == ncclFuncAllReduce)?)\)\s*busBw = std::min\(busBw ?\* ?([\d.]+)"),
    ("tree_ll_bw_divisor", ("src/graph/tuning.cc",),
     r"NCCL_ALGO_TREE && p == NCCL_PROTO_LL\)\s*busBw = std::min\(busBw ?\* ?1\.0 ?/ ?([\d.]+)"),
    ("tree_ll128_bw_one_node_else", ("src/graph/tuning.cc",),
     r"nNodes == 1 \? ([\d.]+) ?/ ?([\d.]+) : ([\d.]+) ?/ ?([\d.]+)"),
    ("tree_pattern_bw_factor", ("src/graph/tuning.cc",), r"NCCL_TOPO_PATTERN_TREE\)\s*busBw \*= ([\d.]+)"),
    ("collnet_direct_bw_factor_sm90", ("src/graph/tuning.cc",), r"minCompCap >= 90\)\s*busBw \*= ([\d.]+)"),
    ("collnet_direct_arity_us", ("src/graph/tuning.cc",), r"\(nRanks ?/ ?nNodes ?- ?1\) ?\* ?([\d.]+)\) ?\+ ?interLat"),
    ("pat_latency_divisor_per_rank_us", ("src/graph/tuning.cc",),
     r"log2i\(nNodes\) \* \(interLat ?/ ?([\d.]+)\)[^+]*\+ ?nRanks ?\* ?([\d.]+)"),
    ("net_overhead_simple_multiplier", ("src/graph/tuning.cc",), r"netOverhead \*= (\d+)"),
    ("ring_plateau_min_bytes", ("src/graph/tuning.cc",), r"comm->nRanks\) >= (\d+)"),
    ("warp_size", ("src/include/device.h", "src/collectives/device/common.h", "src/include/devcomm.h"),
     r"#define WARP_SIZE (\d+)"),
    ("ll_lines_per_thread", ("src/include/device.h", "src/include/devcomm.h"), r"#define NCCL_LL_LINES_PER_THREAD (\d+)"),
    ("ll128_elems_per_thread", ("src/include/device.h", "src/include/devcomm.h"),
     r"#define NCCL_LL128_ELEMS_PER_THREAD (\d+)"),
    ("max_nvls_arity", ("src/include/device.h", "src/include/devcomm.h"), r"#define NCCL_MAX_NVLS_ARITY (\d+)"),
    ("max_dev_work_p2p_per_batch", ("src/include/device.h", "src/include/devcomm.h"),
     r"#define NCCL_MAX_DEV_WORK_P2P_PER_BATCH (\d+)"),
    ("broadcast_chunksteps", ("src/include/collectives.h",), r"#define BROADCAST_CHUNKSTEPS (\d+)"),
    ("alloc_p2p_net_ll_buffers", ("src/init.cc",), r"\"ALLOC_P2P_NET_LL_BUFFERS\", (\d+)\)"),
    ("p2p_schedule_group_size", ("src/init.cc",), r"\"P2P_SCHEDULE_GROUP_SIZE\", (\w+)\)"),
    ("nchannels_per_net_peer", ("src/graph/paths.cc", "src/init.cc"), r"\"NCHANNELS_PER_NET_PEER\", (\w+)\)"),
    ("p2p_per_channel_net_gb_per_s", ("src/graph/paths.cc",), r"\"P2P_PER_CHANNEL_NET_BW\", (?:/\*GB/s\*/ ?)?(\d+)\)"),
    ("ib_ar_threshold_bytes", ("src/transport/net_ib/p2p.cc", "src/transport/net_ib.cc"),
     r"int64_t ncclIbArThreshold = (\d+);|\"IB_AR_THRESHOLD\", (\d+)\)"),
    ("p2p_ll_threshold_bytes", ("src/enqueue.cc",), r"\"P2P_LL_THRESHOLD\", (\d+)\)"),
    ("net_gdr_level_default", ("src/graph/paths.cc",), r"int netGdrLevel = ([^;]+);"),
    ("net_gdr_c2c_default", ("src/graph/paths.cc",), r"\"NET_GDR_C2C\", (\d+)\)"),
)
# (key, file, regex): every match's groups in order, flattened (the NVLS / NVLSTree chunk cuts of calcCollChunking)
FINDALL = (
    ("nvls_chunk_cuts", "src/enqueue.cc",
     r"\(nBytes < \((\d+) \* \(concurrentOps \* chunkSize\)\)\) && \(chunkSize > (\d+)\)\) chunkSize = \d+"),
)
NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)f?(?:\s*\*\s*(\d+\.?\d*|\.\d+))?")
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def _show(git_dir: str, tag: str, path: str) -> str:
    run = subprocess.run(["git", "--git-dir", git_dir, "show", f"{tag}:{path}"], capture_output=True, text=True)
    return run.stdout if run.returncode == 0 else ""


def _block(text: str, names: tuple[str, ...]) -> list[float] | None:
    """The numbers of the brace initializer that follows the first definition of one of `names` (a declaration
    `name[...] =`, a designated `.name =` or a positional `// name` comment line), products such as 2*141.0 taken."""
    for name in names:
        m = re.search(rf"\b{name}\s*(\[[^\]]*\]\s*)*=\s*\{{|\.{name}\s*=\s*\{{|//\s*{name}\s*\n\s*\{{", text)
        if m is None:
            continue
        start, depth, i = m.end() - 1, 0, m.end() - 1
        while i < len(text):
            if text.startswith("/*", i):
                i = text.index("*/", i) + 2
                continue
            if text.startswith("//", i):
                i = text.index("\n", i)
                continue
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        body = COMMENT.sub(" ", text[start:i + 1])
        return [round(float(a) * (float(b) if b else 1.0), 4) for a, b in NUMBER.findall(body)]
    return None


def _ll128_compcaps(text: str) -> str:
    """The compute capabilities NCCL enables LL128 on by default (the `switch (minCompCap)` cases, or the later rule)."""
    m = re.search(r"pEnable == 2 && p == NCCL_PROTO_LL128\).*?(switch \(minCompCap\) \{(.*?)default|!\(minCompCap < (\d+))",
                  text, re.S)
    if m is None:
        return "?"
    if m.group(3):
        return f">= {m.group(3)}"
    return ", ".join(c for c in re.findall(r"case (\d+): pEnable &= (?:1|!)", m.group(2)))


def _ll128_net_gate(text: str) -> str:
    """The LL128 gate on the graph's typeInter (the GPU-NIC path of a ring / tree across nodes)."""
    if "ncclParamLl128C2c() && minCompCap >= 90" in text:
        return "<= PXN on SM90+ (NCCL_LL128_C2C=1), else <= PXB"
    if "typeInter <= (ncclParamLl128C2c() ? PATH_P2C : PATH_PXN)" in text:
        return "<= P2C on SM90+ (NCCL_LL128_C2C=1; PXN with 0), else <= PXB"
    if "typeInter <= PATH_PXB || (minCompCap >= 90 && graphs[a]->typeInter <= PATH_PXN)" in text:
        return "<= PXN on SM90+, else <= PXB"
    return "?"


def _number(text: str):
    """A captured figure as a float, a name (PATH_PXB, NCCL_CONFIG_UNDEF_INT) as it is written."""
    text = COMMENT.sub(" ", text).strip()
    return float(text) if re.fullmatch(r"[\d.]+", text) else " ".join(text.split())


def extract(git_dir: str) -> dict:
    """{constant: {tag: value}} read from the NCCL git directory at each tag of TAGS."""
    out: dict[str, dict] = {}
    for tag in TAGS:
        tuning_cc = _show(git_dir, tag, "src/graph/tuning.cc")
        for names, key in TABLES.items():
            found = _block(tuning_cc, names)
            out.setdefault(key, {})[tag] = found if found is not None else "absent"
        out.setdefault("ll128_compcaps", {})[tag] = _ll128_compcaps(tuning_cc)
        out.setdefault("ll128_net_gate", {})[tag] = _ll128_net_gate(tuning_cc)
        for key, files, pattern in DEFINES:
            value = "absent"
            for path in files:
                m = re.search(pattern, _show(git_dir, tag, path))
                if m:
                    groups = [_number(g) for g in m.groups() if g is not None]
                    value = groups[0] if len(groups) == 1 else groups
                    break
            out.setdefault(key, {})[tag] = value
        for key, path, pattern in FINDALL:
            found = [_number(g) for m in re.finditer(pattern, _show(git_dir, tag, path)) for g in m.groups()]
            out.setdefault(key, {})[tag] = found or "absent"
    return out


def _toml_value(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def write_data(found: dict) -> None:
    lines = ["# Generated by scripts/nccl_version_inventory.py --extract (NVIDIA/nccl, git show TAG:FILE at each tag).",
             "# Each table is one constant moesim takes from NCCL, a row per tag, the numbers of its initializer in order",
             "# (\"absent\" where the tag has no such constant). Data for the docs block; moesim prices with",
             "# moesim/collectives/nccl_tuning.toml (its [versioned] tables carry the rows that differ).", ""]
    for key, rows in found.items():
        lines.append(f"[{key}]")
        lines += [f'"{tag}" = {_toml_value(v)}' for tag, v in rows.items()]
        lines.append("")
    DATA.write_text("\n".join(lines), encoding="utf-8")


def _version(tag: str) -> str:
    return tag[1:].split("-")[0]


def _logs_by_version() -> dict[str, list[tuple[str, str]]]:
    """{x.y.z: [(log, its GPU's nccl_arch), ...]} over the manifest: each log's NCCL release (entry_nccl_version: its
    own banner, else logs.toml nccl_version; "not stated")."""
    from moesim.calibrate.nccl_table import entry_nccl_version, read_manifest
    from moesim.specs.load import load_hardware
    manifest = ROOT / "tests" / "data" / "nccl" / "logs.toml"
    out: dict[str, list[tuple[str, str]]] = {}
    for e in read_manifest(manifest):
        v = entry_nccl_version(manifest.parent, e)
        name = e["file"].removesuffix("_perf.log") + ("" if e["healthy"] else " (not healthy)")
        arch = load_hardware(e["hardware"]).interconnect[0].nccl_arch
        out.setdefault(v or "not stated", []).append((name, arch))
    return out


def _short(v) -> str:
    if isinstance(v, list):
        return " ".join(_short(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _runs(values: list[tuple[str, object]]) -> list[tuple[str, str, object]]:
    """(first tag, last tag, value) per run of equal values over `values` [(tag, value)] in TAGS order."""
    runs: list[list] = []
    for tag, v in values:
        if runs and repr(runs[-1][2]) == repr(v):
            runs[-1][1] = tag
        else:
            runs.append([tag, tag, v])
    return [tuple(r) for r in runs]


def _span(first: str, last: str) -> str:
    return _version(first) + ("" if first == last else f" - {_version(last)}")


def render() -> str:
    data = tomllib.loads(DATA.read_text(encoding="utf-8"))
    logs = _logs_by_version()
    today = {path: nccl_tuning_value(path) for path in VERSIONED}
    lines = [f"Read at every release tag {TAGS[0]} .. {TAGS[-1]} ({len(TAGS)} tags) by scripts/nccl_version_inventory.py "
             "(data: scripts/nccl_version_inventory.toml).", "",
             "**The same at every tag** (NCCL's figure; moesim's in nccl_tuning.toml): " + ", ".join(
                 f"{k} {_short(next(iter(rows.values())))}" for k, rows in data.items()
                 if len({repr(v) for v in rows.values()}) == 1) + ".", "",
             "**Priced by moesim and different between releases** (nccl_tuning.toml [versioned]; a row per run of "
             "equal values, [LL, LL128, Simple] or [1, 2, 4+ nodes]; \"absent\": the release has no such constant, "
             "moesim's value kept). The logs column lists the logs whose release holds another value than the one "
             "moesim prices unset (whether their op / GPU reads it: the pricing below):", "",
             "| constant (nccl_tuning.toml) | releases: value | logs at another value than unset |", "|---|---|---|"]
    for path, (get, _) in VERSIONED.items():
        runs = _runs([(tag, get(data, tag)) for tag in TAGS])
        if len(runs) == 1:
            continue
        cells = "; ".join(f"{_span(a, b)}: {'absent' if v is None else _short(v)}" for a, b, v in runs)
        arch = next((a for a in ARCHS if path.endswith("." + a)), "")
        touched = [name for version, names in logs.items() if version[:1].isdigit()
                   and (v := get(data, f"v{version}-1")) is not None and repr(v) != repr(today[path])
                   for name, log_arch in names if not arch or arch == log_arch]
        lines.append(f"| {path} | {cells} | {', '.join(touched) or '-'} |")
    lines += ["", "**Different between releases, not in [versioned]** (code rules, kept in nccl_code_rules.toml or not "
              "modelled, and tables moesim does not price; the numbers of NCCL's initializer in order, or the code "
              "as written; which is which: docs/collectives-history.md \"Session 17 (versiongap)\"):", ""]
    priced = {"base_latency_us", "hw_latency_us", "ll_max_bws_gb_per_s", "per_ch_max_ring_ll128_gb_per_s",
              "per_ch_max_tree_ll128_gb_per_s", "per_ch_max_tree_gb_per_s", "nvls_nchannels_sm90",
              "nvls_nchannels_sm100", "nvls_nchannels_sm100_nvl", "pat_bw_factor", "maxchannels", "min_traffic_per_channel",
              "min_traffic_ll_multiplier", "collnet_direct_arity_us", "max_nvls_arity", "net_gdr_c2c_default"}
    for key, rows in data.items():
        runs = _runs(list(rows.items()))
        if key in priced or len(runs) == 1:
            continue
        lines.append(f"- {key}: " + "; ".join(f"{_span(a, b)}: {_short(v)}" for a, b, v in runs))
    logs = {v: [name for name, _ in names] for v, names in logs.items()}
    lines += ["", "The logs by the NCCL release they ran (their own `NCCL version` line or `nccl-library=` header, else "
              "logs.toml nccl_version):", "", "| NCCL | logs |", "|---|---|"]
    for v, names in sorted(logs.items(), key=lambda kv: [int(x) for x in kv[0].split(".")]
                           if kv[0][0].isdigit() else [99]):
        lines.append(f"| {v} | {', '.join(names)} |")
    return "\n".join(lines)


def nccl_tuning_value(path: str):
    """The value at `path` in nccl_tuning.toml as it stands (unset: what moesim prices)."""
    node = tomllib.loads(TUNING.read_text(encoding="utf-8"))
    for name in path.split("."):
        node = node[name]
    return node


ALGOS = ("tree", "ring", "collnetdirect", "collnetchain", "nvls", "nvlstree", "pat")  # NCCL_ALGO_* order (nccl.h)
ARCHS = ("volta", "ampere", "hopper", "blackwell")  # compCapIndex order (tuning.cc *_COMPCAP_IDX)
LINKS = ("nvlink", "pci", "net")  # NCCL_HW_NVLINK, NCCL_HW_PCI, NCCL_HW_NET


def _rows3(values, n: int) -> list[list[float]]:
    """`values` cut into n rows of 3 ([LL, LL128, Simple] or [N1, N2, N4]); rows C leaves out are zeros."""
    rows = [values[i:i + 3] for i in range(0, len(values), 3)]
    return rows + [[0.0, 0.0, 0.0]] * (n - len(rows))


def _algo_row(values, algo: str, tag: str, data: dict):
    """An algorithm's [LL, LL128, Simple] of baseLat / one link's hwLat, None where the version has no such algorithm
    (PAT before v2.23.4-1: pat_bw_factor absent)."""
    if algo == "pat" and data["pat_bw_factor"][tag] == "absent":
        return None
    return _rows3(values, len(ALGOS))[ALGOS.index(algo)]


def _hw(link: str, algo: str):
    def get(data, tag):
        flat = data["hw_latency_us"][tag]
        per_link = len(flat) // len(LINKS)
        return _algo_row(flat[LINKS.index(link) * per_link:(LINKS.index(link) + 1) * per_link], algo, tag, data)
    return get


def _base(algo: str):
    return lambda data, tag: _algo_row(data["base_latency_us"][tag], algo, tag, data)


def _arch_row(key: str, arch: str):
    """An architecture's [N1, N2, N4] row; Blackwell before its row existed reads Hopper's (compCapIndex: SM100 ->
    HOPPER_COMPCAP_IDX); a table the version does not have: [0, 0, 0] (no cap)."""
    def get(data, tag):
        flat = data[key][tag]
        if flat == "absent":
            return [0.0, 0.0, 0.0]
        rows = _rows3(flat, 0)
        return rows[min(ARCHS.index(arch), len(rows) - 1)]
    return get


def _nvls_channels(multi: bool):
    """Blackwell's NVLS channels (nvls.cc): NVLS_NCHANNELS_SM100_NVL on one domain where defined, else
    NVLS_NCHANNELS_SM100, else the NCCL_NVLS_NCHANNELS default (SM90's)."""
    def get(data, tag):
        order = ("nvls_nchannels_sm100",) if multi else ("nvls_nchannels_sm100_nvl", "nvls_nchannels_sm100")
        for key in order + ("nvls_nchannels_sm90",):
            if data[key][tag] != "absent":
                return int(data[key][tag])
        return None
    return get


# nccl_tuning.toml path -> (how it is read from the inventory, the source it cites)
VERSIONED = {f"base_latency_us.{a}": (_base(a), "tuning.cc baseLat / baseLatencies") for a in ALGOS}
VERSIONED |= {f"hop_latency_us.{link}.{a}": (_hw(link, a), f"tuning.cc hwLat / hwLatencies[NCCL_HW_{link.upper()}]")
              for link in ("nvlink", "net") for a in ALGOS}
VERSIONED |= {f"gpu_nic_path.no_gdr_pci_hop_us.{a}": (_hw("pci", a), "tuning.cc hwLat / hwLatencies[NCCL_HW_PCI]")
              for a in ("ring", "tree", "collnetdirect", "collnetchain", "pat")}
VERSIONED |= {f"ll_max_bus_gb_per_s.{a}": (_arch_row("ll_max_bws_gb_per_s", a), "tuning.cc llMaxBws") for a in ARCHS}
for _key, _name, _src in (("ring_ll128_gb_per_s", "per_ch_max_ring_ll128_gb_per_s", "perChMaxRingLL128Bws"),
                          ("tree_ll128_gb_per_s", "per_ch_max_tree_ll128_gb_per_s", "perChMaxTreeLL128Bws"),
                          ("tree_gb_per_s", "per_ch_max_tree_gb_per_s", "perChMaxTreeBws")):
    VERSIONED |= {f"per_channel_caps.{_key}.{a}": (_arch_row(_name, a), f"tuning.cc {_src}") for a in ARCHS}
VERSIONED["nvls.channels.blackwell"] = (_nvls_channels(False), "transport/nvls.cc NVLS_NCHANNELS_SM100(_NVL)")
VERSIONED["nvls.channels_multi_node.blackwell"] = (_nvls_channels(True), "transport/nvls.cc NVLS_NCHANNELS_SM100")
VERSIONED["pat.bw_factor"] = (lambda data, tag: None if data["pat_bw_factor"][tag] == "absent"
                              else data["pat_bw_factor"][tag], "tuning.cc ncclTopoTuneModel (PAT busBw *=)")
for _arch in ("hopper", "blackwell"):  # SM90+: the gate's SM90 branch (Blackwell's LL128 before v2.25.1-1: not modelled)
    VERSIONED[f"gpu_nic_path.ll128_max.{_arch}"] = (
        lambda data, tag: "P2C" if data["ll128_net_gate"][tag].startswith("<= P2C") else "PXN",
        "tuning.cc ncclTopoTuneModel (LL128's typeInter gate)")


def _min_traffic(data, tag):
    """MinTrafficPerChannel in bytes (`16 << 10` read as [16, 10]); None before v2.22.3-1 (no such constant)."""
    value = data["min_traffic_per_channel"][tag]
    if value == "absent":
        return None
    return int(value[0]) << int(value[1]) if isinstance(value, list) else int(value)


def _min_traffic_ll(data, tag):
    """LL's trafficPerByte multiplier in the scheduler's cells: 1 where MinTrafficPerChannel exists but the line
    does not (v2.22.3-1 .. v2.25.1-1), None where neither does."""
    if _min_traffic(data, tag) is None:
        return None
    value = data["min_traffic_ll_multiplier"][tag]
    return 1 if value == "absent" else int(value)


# session 17 (versiongap): the rest of the NCCL figures nccl_tuning.toml prices that differ between releases
VERSIONED["channels.min_traffic_per_channel_bytes"] = (_min_traffic, "enqueue.cc MinTrafficPerChannel")
VERSIONED["channels.min_traffic_ll_multiplier"] = (_min_traffic_ll, "enqueue.cc scheduleCollTasksToPlan (LL trafficPerByte *=)")
VERSIONED["channels.max_channels"] = (lambda data, tag: int(data["maxchannels"][tag]), "include/device.h (devcomm.h before v2.19) MAXCHANNELS")
VERSIONED["collnet.direct_per_local_rank_us"] = (lambda data, tag: data["collnet_direct_arity_us"][tag],
                                                 "tuning.cc ncclTopoTuneModel (CollNetDirect arity serialization)")
VERSIONED["nvls_chunk.max_arity"] = (lambda data, tag: int(data["max_nvls_arity"][tag]), "include/device.h (devcomm.h before v2.19) NCCL_MAX_NVLS_ARITY")
VERSIONED["gpu_nic_path.gdr_also"] = (  # GDR on a P2C path (Grace C2C) only where NCCL_NET_GDR_C2C defaults to 1
    lambda data, tag: ["P2C", "PXN"] if data["net_gdr_c2c_default"][tag] == 1.0 else ["PXN"],
    "graph/paths.cc ncclTopoCheckGdr (NCCL_NET_GDR_C2C default)")
ROWS_BEGIN = "# BEGIN versioned rows: python scripts/nccl_version_inventory.py --rows"
ROWS_END = "# END versioned rows"


def versioned_rows() -> str:
    """The [versioned] tables of nccl_tuning.toml: for every constant whose value differs between the release tags
    read, one table with a row per run of equal values, [first, last, value] (None where the version lacks it:
    "absent", moesim's value kept), its tags in a comment."""
    data = tomllib.loads(DATA.read_text(encoding="utf-8"))
    lines = ["[versions]", "# the NCCL releases a version-keyed row may name (every tag read: NVIDIA/nccl v2.x.y-1)",
             "releases = [" + ", ".join(f'"{_version(t)}"' for t in TAGS) + "]", ""]
    for path, (get, source) in VERSIONED.items():
        values = [(tag, get(data, tag)) for tag in TAGS]
        if len({repr(v) for _, v in values}) == 1:
            continue
        lines += [f'[versioned."{path}"]', f"# NVIDIA/nccl src/{'graph/' if source.startswith('tuning') else ''}{source}",
                  "rows = ["]
        run: list[str] = []
        prev = None
        for tag, v in values + [(None, None)]:
            if run and (tag is None or repr(v) != repr(prev)):
                shown = '"absent"' if prev is None else _toml_value(prev)
                cite = run[0] + ("" if len(run) == 1 else f" .. {run[-1]}")
                lines.append(f'  ["{_version(run[0])}", "{_version(run[-1])}", {shown}],  # {cite}')
                run = []
            if tag is not None:
                run.append(tag)
                prev = v
        lines += ["]", ""]
    return "\n".join(lines).rstrip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extract", metavar="GIT_DIR", help="read the tags from this NVIDIA/nccl git directory")
    parser.add_argument("--write", action="store_true", help=f"replace the marked block of {DOC.name}")
    parser.add_argument("--rows", action="store_true", help="print nccl_tuning.toml's [versioned] tables; with "
                        "--write replace them there")
    args = parser.parse_args()
    if args.extract:
        write_data(extract(args.extract))
    if args.rows:
        rows = versioned_rows()
        if args.write:
            from scripts.docblock import replace_block
            replace_block(TUNING, ROWS_BEGIN, ROWS_END, rows)
        print(rows)
        return
    block = render()
    if args.write:
        from scripts.docblock import replace_block
        replace_block(DOC, BEGIN, END, block)
    print(block)


if __name__ == "__main__":
    main()
