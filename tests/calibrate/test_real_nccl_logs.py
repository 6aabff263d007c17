"""Public nccl-tests outputs (tests/data/nccl, sources in SOURCES.md): every layout reads, bad ones fail with
one line, the uncalibrated priors' busbw error per log, and calibrating on one log of a cluster helps its
other logs. The per-log table in docs/collectives.md is written by docs/make_collectives_table.py from the
same functions."""

import tomllib
from pathlib import Path

import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.nccl_error import log_error
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.cli import main
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

from calibrate_synth import HELDOUT_MATRIX

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"
MANIFEST = tomllib.loads((DATA / "logs.toml").read_text())
LOGS = {entry["file"]: entry for entry in MANIFEST["log"]}
HEALTHY = [name for name, e in LOGS.items() if e["healthy"]]

# The targets: busbw MAPE <= 20 % at >= 1 MiB and <= 40 % below 1 MiB on every healthy log. The logs
# that miss them are listed with the bound they do meet, so a regression still fails (docs/collectives.md).
TARGET_LARGE, TARGET_SMALL = 0.20, 0.40
KNOWN_MISSES = {
    # Met since the published NVLink LL / LL128 hop (nccl_tuning.toml [published_hop_us], arXiv:2507.04786 Table I):
    # a100-thanos < 1 MiB 48.0 -> 17.3 %, b200-vultr-1node all_gather / reduce_scatter 52.8 / 53.7 -> 22.4 / 23.0 %,
    # b200-vultr-2node all_reduce 40.5 -> 16.1 %, h200-spectrumx 51.1 -> 39.5 % (docs/collectives-history.md).
    # Met since the mnfloor round (the ring's worst chain and the LL network send's host leg, nccl_multinode.py), with
    # the published hop: b200-vultr-2node all_gather / reduce_scatter < 1 MiB 52.9 / 55.8 -> 34.6 / 37.3 %;
    # b200-vultr-2node all_reduce 16.1 -> 11.0 %, h200-spectrumx 39.5 -> 34.7 % (docs/collectives-history.md, round 3).
    # 63.8 % since NCCL's per-size channel and thread count (ramp round, nccl_channels; docs/collectives-history.md "The ramp from
    # NCCL's channel count"); 88 % before it (114 % before the mnfloor round; 178 % before NCCL's ring net overhead and
    # multi-node LL cap): 54-64 us below 1 MiB on GKE A3 Ultra (RoCE) against 27-50 us priced for the ring. Session 6 (gIB
    # round): LL off would give 19.7 % (before the ramp round), but no source says the gIB tuner configuration turns it
    # off, and another A3 Ultra run of the same set-up measures LL's 28 us floor (h200-gke-a3ultra-sky-2node, 9.6 %); not
    # attached (docs/collectives-history.md, GKE RoCE floors (gIB)). Session 7 (evidence round): still no TUNING line or txtpb
    # text in any public source (docs/collectives-history.md, "Cluster facts, session 7"). Session 11 (smallag): not the
    # same set-up after all: the job file at the log's commit runs gIB v1.0.5, the sky run prints NCCL 2.26.6; the log is
    # the sky one + 23.5-27.3 us per call at 1 KiB - 1 MiB, a stack difference with no sourced figure, not priced
    # (docs/collectives-history.md, "Session 11 (smallag)")
    ("h200-gke-a3ultra-2node_all_gather_perf.log", "small"): 0.66,
    # Met since the ramp round: b200-gke-a4-2node all_gather < 1 MiB 50.9 -> 31.8 % (was listed here: 0.54; the gIB round
    # notes LL off would give 6.3 %, not attached).
    # B200 on Vultr (2 x 8, IB NDR; one report in mihai-amp/cluster-quality): the multi-node non-all-reduce runs are
    # slower than priced (measured / priced time - 1 > 0), not relabelled, listed with what they measure:
    # 38.4 % (39.1 before the vultr round's stated AMD hosts, 41.3 before the mnfloor round): the 1-64 MiB ramp.
    # Session 7 (evidence round): the hosts' GPU-NIC path (PHB / NODE / SYS would meet the bar) is still stated in no
    # public source, so it is not set (docs/collectives-history.md, "Cluster facts, session 7")
    # Session 10 (ringnet): ramp 1-512 MiB 48.6 / 50.4 % MAPE, rows from 1 GiB 18.0 / 18.5 % (38.5 / 38.0 GB/s per NIC);
    # with the plateau priced exactly 32.4 / 33.6 % (scripts/ring_plateau_table.py); no sourced plateau mechanism found.
    # Session 11 (ramp): 31.1 / 32.3 % with NCCL's per-channel LL128 caps (the 32-512 MiB LL128 rows); the 1-16 MiB step
    # stays (docs/collectives-history.md "Session 11 (ramp)").
    ("b200-vultr-2node_all_gather_perf.log", "large"): 0.42,
    ("b200-vultr-2node_reduce_scatter_perf.log", "large"): 0.43,  # 39.7 % (40.4, 42.7): same shape as the all_gather
    # --- newlogs (session 9): Voltage Park H100, 4 x 8 on IB (ZiyanIshani/vpbenchmarking; SOURCES.md, "Session 9
    # (newlogs)"), priced as it came, after the inclusion rule and the healthy flags were committed. No fix in this lane.
    # 22.4 % (< 1 MiB 8.8 %): the ring/LL128 rows at 1-32 MiB run 16-80 % slower than priced (4 MiB: 193 us against
    # 107), the Simple rows from 256 MiB 3-11 % slower: the 1-64 MiB ramp shape the Vultr 2-node ring misses have too.
    # Session 10 (ringnet): ramp 28.3 %, rows from 1 GiB 7.7 % (40.9 GB/s per NIC, as the met H100 / H200 multi-node
    # logs); with the plateau priced exactly 20.2 % (scripts/ring_plateau_table.py); no sourced plateau mechanism found.
    # Met since session 11 (ramp): NCCL's per-channel ring LL128 / tree caps, 22.4 -> 19.4 % (was listed here: 0.24).
    # the first broadcast log in the set, 92.8 | 70.7 %: below 64 KiB it measures 9-29 us against 31.5 us priced for
    # the ring/LL chain across 32 ranks (nccl-tests reports the mean over ranks of each rank's own per-iteration time,
    # src/common.cu v2.17.9 `average = 1`, and back-to-back broadcasts pipeline down the chain: a reading, not
    # checked); from 128 KiB to 16 MiB it is 1.4-3.2x slower than priced and from 32 MiB 28-85 % slower (286 GB/s busbw
    # at 8 GiB). Not modelled; the one-node broadcast of the same cluster is erratic (not held), so no second log.
    # Session 10 (bcast): NCCL's per-size channels and ring LL bus cap (broadcast_model "nccl", the default) bring it to
    # 56.8 | 61.1 % (still misses): the floor stays 31.5 us (one broadcast's chain; nccl-tests' back-to-back reading
    # meets it, 9.8 us, but prices 1-256 MiB faster still: 175.5 % >= 1 MiB, not shipped); the 1-256 MiB ring/LL128 rows
    # measure 1.3-2.1x the priced time (16-256 MiB measure ~210 us + S / 281 GB/s: no source read explains the 210 us),
    # the ring/Simple rows from 512 MiB 1.3-1.7x (the ring plateau over the network: 286 GB/s at 8 GiB, 367 priced).
    # docs/collectives-history.md "Session 10 (bcast)".
    # Session 17 (bcast): NCCL's per-channel ring LL128 cap on the broadcast too (broadcast_model "nccl-ll128-cap", the
    # default; tuning.cc v2.24.3-1 l. 251): 52.0 | 61.1 %, the 4-64 MiB LL128 rows 3-16 pt closer, still a miss.
    ("h100-voltagepark-4node_broadcast_perf.log", "large"): 0.53,
    ("h100-voltagepark-4node_broadcast_perf.log", "small"): 0.62,
    # --- newlogs (session 9): H100 "example-cluster01" of xxrjun/nccl-tests-cluster, 10 x 8 (32 MiB - 16 GiB only; the
    # fabric is not stated: SOURCES.md). The ring all-gather / reduce-scatter run slower than priced at every size:
    # 28.6 / 29.2 %, the ring/LL128 rows at 32-512 MiB 18-94 % slower (a dip at 256 MiB in both), the ring/Simple rows
    # from 1 GiB 7-14 % slower (328 GB/s at 16 GiB against 369 priced): the ring across 10 nodes plateaus 11 % under the
    # profile's NIC-bound line.
    # Session 10 (ringnet): ramp 32-512 MiB 44.3 / 47.1 % MAPE, rows from 1 GiB 12.9 / 11.3 % (40.5 / 40.4 GB/s per NIC,
    # as the met H100 / H200 multi-node logs); with the plateau priced exactly 22.2 / 23.6 % (scripts/ring_plateau_table.py).
    ("h100-xxrjun-10node_all_gather_perf.log", "large"): 0.30,
    ("h100-xxrjun-10node_reduce_scatter_perf.log", "large"): 0.31,
    # --- evidence (session 12): the same ten hosts' other 10-node job, a day earlier (run 20260128-145054; SOURCES.md,
    # "Session 12 (evidence)"), priced as it came after its flags were committed: 24.8 / 25.3 % (the run above: 23.2 /
    # 23.7 %), the same shape, so the miss is the cluster's, not one job's; `--nccl-proto ^LL128` would give 16.9 / 16.7 %
    # (docs/collectives-history.md, "Session 12 (evidence)").
    ("h100-xxrjun-10node-b_all_gather_perf.log", "large"): 0.27,
    ("h100-xxrjun-10node-b_reduce_scatter_perf.log", "large"): 0.28,
    # h100-xxrjun-10node sendrecv met since session 11 (p2pcong): 83.7 -> 8.0 %, NCCL's p2pnChannels across nodes is
    # pow2Up of the 16 collective channels (paths.cc ncclTopoComputeP2pChannels, v2.29.2-1), so 80 ranks run one
    # channel per network peer (14 GB/s priced, 15.2 measured) where 32 gave two (28.0).
    # --- newlogs4 (session 13): MIT ORCD's Engaging B200 nodes (mit-orcd/orcd-benchmarks; SOURCES.md, "Session 13
    # (newlogs4)"), one process per node driving 8 GPUs (-g 8), 1 MiB - 16 GiB; priced as they came after the kept runs
    # and the flags were committed (docs/collectives-history.md, "Session 13 (newlogs4)"). Not tuned away.
    # The 2-node pair: every collective but sendrecv spends 0.33-1.3 ms a call at 1-64 MiB (the same pair's sendrecv:
    # 52 us at 1 MiB), so the rows there measure 2-10x the priced time; from 1 GiB the ring rows are within 0-16 % of
    # the priced ring/Simple plateau (4 and 16 GiB: +0 to +8 %). A reading, not checked: the job runs one MPI rank per
    # node with no -c, so OpenMPI binds it to one core, on which the proxy threads of its 8 GPUs progress every network
    # send; the sendrecv (one network peer per node) is met, 7.8 %.
    ("b200-engaging-2node_all_gather_perf.log", "large"): 3.02,  # 298.0 %: 1 MiB +962 %, 16 GiB +2 %
    ("b200-engaging-2node_reduce_scatter_perf.log", "large"): 2.41,  # 237.8 %: 1 MiB +792 %, 16 GiB -0 %
    ("b200-engaging-2node_broadcast_perf.log", "large"): 2.21,  # 217.8 %: 1 MiB +757 %, 16 GiB +2 %
    # 409.3 %: also 2.8x at 16 GiB (240 GB/s busbw against 676 priced for NVLSTree/Simple; the source reads 240 as the
    # ring's two passes, and no NCCL line says which algorithm ran)
    ("b200-engaging-2node_all_reduce_perf.log", "large"): 4.12,
    # 279.9 %: 1.85x at 16 GiB too (48.4 GB/s busbw at 4 GiB, "one rail's worth" in the source's words, against 88
    # priced; the Vultr 2-node alltoall, not held, plateaus at 42.4)
    ("b200-engaging-2node_alltoall_perf.log", "large"): 2.82,
    # The 1-node run (-g 8): the 1-16 MiB rows measure 19-77 % over the priced time (the host floor of 8 launches binds
    # only at 1 MiB), from 64 MiB within -10 to +18 %.
    ("b200-engaging-1node_all_gather_perf.log", "large"): 0.26,  # 23.6 %: 1 MiB +70 %, 16 MiB +63 %
    ("b200-engaging-1node_alltoall_perf.log", "large"): 0.28,  # 26.1 %: 1 MiB +77 %, 4 MiB +72 %
    # --- newlogs5 (session 14): the same -g 8 job on the second pair by job id, node5500 + node5502 (SOURCES.md, "Session
    # 14 (newlogs5)"), priced once after the runs kept and the flags were committed (2a70d1b). Not tuned away. The same
    # per-call cost as the first pair (0.30-1.1 ms at 1-16 MiB, sendrecv met at 5.6 %), so it belongs to the job, not to
    # node5501; the large ring rows again sit on the priced plateau (all_gather / reduce_scatter -2 % at 16 GiB).
    ("b200-engaging-2node-b_all_gather_perf.log", "large"): 2.42,  # 239.4 %: 1 MiB +776 %, 16 GiB -2 %
    ("b200-engaging-2node-b_reduce_scatter_perf.log", "large"): 2.44,  # 241.1 %: 1 MiB +706 %, 16 GiB -2 %
    ("b200-engaging-2node-b_broadcast_perf.log", "large"): 1.72,  # 169.6 %: 1 MiB +916 %, 16 GiB +4 %
    ("b200-engaging-2node-b_all_reduce_perf.log", "large"): 4.33,  # 430.8 %: 4 MiB +873 %, 16 GiB +190 % (229 GB/s busbw)
    ("b200-engaging-2node-b_alltoall_perf.log", "large"): 2.88,  # 285.2 %: 1 MiB +911 %, 16 GiB +77 % (49.9 GB/s busbw)
    # --- newlogs6 (session 15): the same hardware's Ubuntu pair, node5700 + node5701 (another software stack, the same
    # -g 8 launch; SOURCES.md, "Session 15 (newlogs6)"), priced once after the runs kept and the flags were committed
    # (8035d43). Not tuned away. The per-call cost is there at about half the Rocky pairs' (all_gather 1 MiB +375 %
    # against +776 / +962 %), so it is not a property of the Rocky stack alone; sendrecv met again (6.3 %).
    ("b200-engaging-ubuntu-2node_all_gather_perf.log", "large"): 1.27,  # 124.5 %: 1 MiB +375 %, 16 GiB -1 %
    ("b200-engaging-ubuntu-2node_reduce_scatter_perf.log", "large"): 1.40,  # 137.7 %: 1 MiB +383 %, 16 GiB -2 %
    ("b200-engaging-ubuntu-2node_broadcast_perf.log", "large"): 1.12,  # 109.9 %: 1 MiB +398 %, 16 GiB +6 %
    ("b200-engaging-ubuntu-2node_all_reduce_perf.log", "large"): 3.12,  # 310.0 %: 4 MiB +767 %, 16 GiB +152 % (264 GB/s)
    ("b200-engaging-ubuntu-2node_alltoall_perf.log", "large"): 1.25,  # 122.7 %: 1 MiB +227 %, 16 GiB +59 % (55.4 GB/s)
    # --- newlogs8 (session 18): Crusoe's 2 x 8 A100 80GB on InfiniBand (dstack's Crusoe example, one process per GPU;
    # SOURCES.md, "Session 18 (newlogs8)"), priced once after the log and its flag were committed (cc99cb8). Not tuned
    # away: it runs FASTER than priced from 512 KiB on (signed -25.6 %), the ring/LL128 rows most (16 MiB 266 us against
    # 436 priced), the ring/Simple plateau 194 GB/s busbw against 173 priced (2 GiB -11 %); the a100-80gb profile's
    # 200 Gb/s HDR per GPU is UNCONFIRMED and the page states no NIC speed. Lambda's B200 pair is met (17.2 | 15.3 %).
    ("a100-crusoe-2node_all_reduce_perf.log", "large"): 0.27,  # 25.6 %: 1 MiB -24 %, 16 MiB -39 %, 2 GiB -11 %
    # --- newlogs15 (session 25): a Kubernetes MPIJob README's 2 x 8 H100 all_reduce (code-index id 24095369088;
    # SOURCES.md, "Session 25 (newlogs15, issue 11)"), fabric not stated, held by session 13's rule; priced once after
    # the log and its flags were committed (b08ea45). Not tuned away: it runs SLOWER than priced at every size (signed
    # +137.2 %), busbw 193-197 GB/s against 429-484 priced for NVLSTree on the profile's 8 x 400 Gb/s; forced to the
    # ring still +60 to +85 %. Its ring-like plateau, 24.6 GB/s a rail, is half that of the same-named MPIJob of
    # wutz/k8s-in-action (h100-wutz, NCCL_ALGO=Ring, 8 x 400 Gb/s stated: 48.9 GB/s a rail, met at 11.6 %): a reading,
    # not a stated fabric (docs/collectives-history.md, "Session 25 (newlogs15)").
    ("h100-k8s-2node_all_reduce_perf.log", "large"): 1.40,  # 137.2 %: 512 MiB +122 %, 8 GiB +146 %
}


def points(name):
    entry = LOGS[name]
    return read_nccl_tests(DATA / name, op=entry.get("op"), ranks=entry.get("ranks")).collectives


def test_manifest_lists_every_log_once():
    assert MANIFEST["schema_version"] == 1
    assert sorted(LOGS) == sorted(p.name for p in DATA.glob("*.log"))
    assert len(LOGS) >= 12
    sources = (DATA / "SOURCES.md").read_text()
    assert all(name in sources for name in LOGS)


@pytest.mark.parametrize("name", sorted(LOGS))
def test_every_collected_log_parses(name):
    pts = points(name)
    assert pts and all(p.time_s > 0 and p.size_bytes > 0 for p in pts)
    assert len({p.group_size for p in pts}) == 1


def test_layout_details_of_real_logs():
    # nccl-tests 2.19.4 with "unalign" and "#wrong" padded: 25 sizes x 2
    assert len(points("a100-dkh-1node_all_reduce_perf.log")) == 50
    # Slurm machine-file chatter ("rank 0=GPU-6550 slot=0") before the header is ignored
    assert len(points("h200-oci-2node_all_reduce_perf.log")) == 10
    # "8 more processes have sent help message ..." between rows: skipped, listed
    thanos = read_nccl_tests(DATA / "a100-thanos-1node-mpirun_all_reduce_perf.log")
    assert len(thanos.collectives) == 60 and len(thanos.skipped) == 2
    assert all("not a result row" in s for s in thanos.skipped)
    # markdown lost the '#' of "nThread", "Using devices" and rank 0: the rank lines still count 16 ranks
    assert {p.group_size for p in points("h100-a3mega-2node-mangled_all_reduce_perf.log")} == {16}


def test_cut_rank_list_zero_byte_row_and_split_row():
    path = DATA / "h200-cetus-2node-cut_all_reduce_perf.log"
    log = read_nccl_tests(path)  # ranks 7 and 15 listed: the group is the largest id + 1
    assert {p.group_size for p in log.collectives} == {16}
    assert len(log.collectives) == 60  # 31 rows, less the 0-byte row, x 2
    assert [s.split(": ", 1)[1] for s in log.skipped] == ["fragment of a row split by other output", "0-byte row"]
    assert read_nccl_tests(path, ranks=16).collectives == log.collectives
    with pytest.raises(SpecError, match="lists rank 15 but --ranks 8"):
        read_nccl_tests(path, ranks=8)


def test_wrong_rank_count_says_to_pass_ranks(tmp_path):
    text = (DATA / "h100-ib-4node-gjaion_all_reduce_perf.log").read_text().splitlines()
    cut = [line for line in text if not any(f"Rank {r} " in line for r in range(16, 32))]  # list cut to 16
    path = tmp_path / "all_reduce_perf.log"
    path.write_text("\n".join(cut) + "\n")
    with pytest.raises(SpecError, match=r"all_reduce over 16 ranks has factor 1.875.*pass --ranks N"):
        read_nccl_tests(path)
    assert {p.group_size for p in read_nccl_tests(path, ranks=32).collectives} == {32}
    # 14 against 16 ranks is within the print rounding of busbw (factor 1.857 vs 1.875): why --ranks exists
    two = (DATA / "h100-ib-2node-gjaion_all_reduce_perf.log").read_text().splitlines()
    path.write_text("\n".join(line for line in two if "Rank 14" not in line and "Rank 15" not in line) + "\n")
    assert {p.group_size for p in read_nccl_tests(path).collectives} == {14}


def test_srun_label_prefixes(tmp_path):
    src = DATA / "h100-ib-2node-gjaion_all_reduce_perf.log"
    labelled = tmp_path / "all_reduce_perf.log"
    labelled.write_text("".join(f"{i % 16:2d}: {line}\n" for i, line in enumerate(src.read_text().splitlines())))
    got = read_nccl_tests(labelled).collectives
    assert [(p.size_bytes, p.time_s) for p in got] == [(p.size_bytes, p.time_s) for p in points(src.name)]


def test_blank_redop_of_old_alltoall(tmp_path):
    # nccl-tests before Sep 2022: alltoall printed its redop column blank (wave2.md §2)
    lines = ["# nThread 1 nGpus 1 minBytes 1048576 maxBytes 1048576 step: 2(factor) warmup iters: 5 iters: 20",
             "# Using devices"]
    lines += [f"#   Rank {r:2d} Pid  {100 + r} on host device {r} [0x1a] Tesla V100-SXM2-32GB" for r in range(4)]
    lines += ["#       size         count      type   redop     time   algbw   busbw  error     time   algbw   busbw"
              "  error",
              "#        (B)    (elements)                        (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)",
              "     1048576         65536     float             100.0   10.49    7.86  0e+00    100.0   10.49    7.86"
              "  0e+00"]
    path = tmp_path / "alltoall_perf.log"
    path.write_text("\n".join(lines) + "\n")
    got = read_nccl_tests(path).collectives
    assert [(p.op, p.group_size, p.size_bytes) for p in got] == [("all_to_all", 4, 1048576)] * 2


def test_unknown_layout_fails_with_one_line(tmp_path, capsys):
    path = tmp_path / "all_reduce_perf.log"
    path.write_text("# Using devices\n#  Rank  0 Group  0 Pid 1 on h device 0 [0x1] GPU\n"
                    "#  size  count  type  time  latency\n1024 256 float 10.0 3.0\n")
    with pytest.raises(SpecError, match=r"unknown nccl-tests column layout .*no algbw, busbw column"):
        read_nccl_tests(path)
    assert main(["calibrate", str(path), "--hardware", "h100-sxm", "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("name", sorted(LOGS))
def test_calibrate_never_ends_in_a_traceback(name, tmp_path, capsys):
    entry = LOGS[name]
    args = ["calibrate", str(DATA / name), "--hardware", entry["hardware"], "-o", str(tmp_path / "p.toml"),
            "--bootstrap", "0"]
    args += ["--nccl-op", entry["op"]] if "op" in entry else []
    args += ["--ranks", str(entry["ranks"])] if "ranks" in entry else []
    args += [a for key in ("host_cpu", "gpu_nic_path") if key in entry
             for a in (f"--{key.replace('_', '-')}", entry[key])]
    assert main(args) in (0, 2)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out


def errors(name, profile=None):
    from moesim.calibrate.log_pricing import priced_log

    # the profile with the log's system facts (host_cpu, gpu_nic_path), its model and its -g
    return priced_log(DATA, LOGS[name], profile).error()


@pytest.mark.parametrize("name", HEALTHY)
def test_uncalibrated_prior_busbw_error(name):
    err = errors(name)
    bound_large = KNOWN_MISSES.get((name, "large"), TARGET_LARGE)
    bound_small = KNOWN_MISSES.get((name, "small"), TARGET_SMALL)
    assert err.mape_large is not None and err.mape_large <= bound_large
    assert err.mape_small is None or err.mape_small <= bound_small


def test_known_misses_are_still_misses():
    """The exceptions above are real misses, so the table in docs/collectives.md stays honest."""
    for (name, kind), _ in KNOWN_MISSES.items():
        err = errors(name)
        value = err.mape_large if kind == "large" else err.mape_small
        assert value > (TARGET_LARGE if kind == "large" else TARGET_SMALL)


def test_nvls_and_nvlstree_are_what_hopper_runs():
    two = errors("h100-hgx-2node-qoofyk_all_reduce_perf.log")
    big = [e for e in two.sizes if e.size_bytes >= 2**26]
    assert {e.algorithm for e in big} == {"nvlstree/Simple"}
    tiny = [e for e in two.sizes if e.size_bytes <= 2**10]
    assert {e.algorithm for e in tiny} == {"tree/LL"}
    # the latency floor: 2 nodes measure 24.7-26.6 us below 1 KiB. NCCL's own model (its 0.6 us NVLink LL hop) gives
    # 25.2 us, and picks tree/LL; the wire at the published 1.0 us hop (arXiv:2507.04786, nccl_tuning.toml
    # [published_hop_us]) and the LL network send's host-memory leg (2 network hops x 1.0 us, mnfloor round) is
    # priced 32.8 us, 23-33 % above (busbw -19 to -25 %): this log's floor fits NCCL's table (docs/collectives-history.md,
    # "NVLink per-hop latency (published)", "Multi-node floors, round 3")
    assert all(-0.26 < e.busbw_error < -0.18 for e in tiny)
    found = default_model(load_hardware("h100-sxm")).candidates("all_reduce", 64.0, Group(size=16, devices=16))
    (tree_ll,) = [c for c in found if c.label == "tree/LL"]
    assert tree_ll.time_s + tree_ll.tuner_offset_s == pytest.approx(25.2e-6, abs=0.05e-6)
    # 32.8 us before the ramp round; 64 B now runs on 1 of 16 channels (nccl_channels.channel_share), under the LL cap
    assert tree_ll.time_s == pytest.approx(32.85e-6, abs=0.02e-6)


def test_calibrating_on_one_log_of_a_cluster_helps_the_others(tmp_path):
    """gj-aion's cluster (NVIDIA/nccl-tests#309): fit on its 2-node log, hold out its 4- and 8-node logs."""
    fit_on = "h100-ib-2node-gjaion_all_reduce_perf.log"
    result = calibrate([str(DATA / fit_on)], "h100-sxm", tmp_path / "cal.toml", bootstrap=0, holdout_fraction=0.0)
    # gains: 4 nodes 10.2 -> 9.8 %, 8 nodes 10.3 -> 9.5 % (11.5 -> 10.5 and 13.9 -> 11.6 before the nvlschunk round's
    # NVLS / NVLSTree loops, 13.6 -> 11.6 and 16.7 -> 11.8 before the published NVLink LL / LL128 hop: each brought the
    # priors closer; the 2-node rows no longer move NVLink's W, which carried most of the 4-node gain before: a
    # multi-node row sets only the outermost level's figures, calibrate/design.py)
    for held, gain in (("h100-ib-4node-gjaion_all_reduce_perf.log", 0.003),
                       ("h100-ib-8node-gjaion_all_reduce_perf.log", 0.006)):
        prior, fitted = errors(held), errors(held, result.profile)
        assert fitted.mape_large < prior.mape_large - gain, (held, prior.mape_large, fitted.mape_large)


@HELDOUT_MATRIX
def test_collectives_doc_table_is_current(load_script):
    script = load_script("docs/make_collectives_table.py")
    from moesim.calibrate.nccl_table import render

    doc = script.DOC.read_text(encoding="utf-8")
    assert doc.split(script.MARKER)[1].strip() == render(script.MANIFEST).strip(), \
        "run: python docs/make_collectives_table.py"


def test_collnet_chain_against_coreweave_sharp_log():
    """CoreWeave's 64-GPU H100 SHARP example (NCCL_ALGO=COLLNETCHAIN): NCCL's CollNetChain prices it within
    10 % (algbw 0.5 x the NVLink figure, 185 GB/s, against 180-195 measured)."""
    err = errors("h100-coreweave-8node-sharp_all_reduce_perf.log")
    assert {e.algorithm for e in err.sizes} == {"collnetchain/Simple"}
    assert err.mape_large < 0.10


def test_log_pasted_without_any_hash(tmp_path):
    """NVIDIA/nccl#1047 pasted the log with no '#' at all: titles, units and the rank line still read."""
    got = points("h100-nccl1047-1node-ring_reduce_scatter_perf.log")
    assert len(got) == 14 and {(p.op, p.group_size) for p in got} == {("reduce_scatter", 8)}
    text = (DATA / "h100-nccl1047-1node-ring_reduce_scatter_perf.log").read_text().splitlines()
    path = tmp_path / "reduce_scatter_perf.log"
    path.write_text("\n".join(line for line in text if "size" not in line or "count" not in line) + "\n")
    with pytest.raises(SpecError, match="a result row before the column titles"):
        read_nccl_tests(path)


def test_one_thread_driving_eight_gpus_sets_the_small_size_floor():
    """dkh's `-g 8` run: one thread launches 8 kernels per iteration (nccl-tests startColl in one group), so the
    host's 8 x 4 us sets the time of every size whose collective is shorter (68.7 % -> 17.4 % below 1 MiB; 126.6 %
    -> 18.6 % before the published NVLink LL hop raised the collective's own floor)."""
    name = "a100-dkh-1node_all_reduce_perf.log"
    assert LOGS[name]["gpus_per_thread"] == 8
    hw = load_hardware(LOGS[name]["hardware"])
    with_floor, without = errors(name), log_error(points(name), hw)
    # without the host floor: 68.7 % before the ramp round, 41.1 % since (fewer channels at small sizes, channel_share)
    assert without.mape_small > 0.35 and with_floor.mape_small < TARGET_SMALL
    # up to 2 KiB (32 KiB before the ramp round: 8-32 KiB now run on one channel, whose transfer passes the floor)
    tiny = [e for e in with_floor.sizes if e.size_bytes <= 2**11]
    assert tiny and all(e.host_bound and e.predicted_s == pytest.approx(8 * hw.efficiency.kernel_launch_s)
                        for e in tiny)
    assert all(0 < e.busbw_error < 0.2 for e in tiny)  # 34.8-36.9 us measured against 32 us
    big = [e for e in with_floor.sizes if e.size_bytes >= 2**20]
    assert not any(e.host_bound for e in big)
    assert [e.predicted_s for e in big] == [e.predicted_s for e in without.sizes if e.size_bytes >= 2**20]
    # one process per GPU (thanos): the single launch (4 us) is under every collective, nothing changes
    thanos = "a100-thanos-1node-mpirun_all_reduce_perf.log"
    assert "gpus_per_thread" not in LOGS[thanos]
    assert not any(e.host_bound for e in errors(thanos).sizes)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_gpus_per_thread_must_be_a_positive_integer(bad):
    name = "a100-dkh-1node_all_reduce_perf.log"
    with pytest.raises(SpecError, match="gpus_per_thread"):
        log_error(points(name), load_hardware("a100-80gb"), None, bad)


def test_sendrecv_log_follows_nccls_p2p_channel_count():
    """li-plus's sendrecv_perf on 8 A100: 128 MiB runs at 110 GB/s, 256 MiB-1 GiB at 189-196. NCCL splits the
    send over 8 channels at 128 MiB and 16 at 256 MiB (nccl.p2p_channels), priced 100 and 200 GB/s: the slow
    first size is the channel count, not noise (42.3 % -> 13.7 % at >= 1 MiB)."""
    err = errors("a100-liplus-1node_sendrecv_perf.log")
    first, second = err.sizes[0], err.sizes[1]
    assert first.size_bytes == 2**27 and abs(first.busbw_error) < 0.12 and abs(second.busbw_error) < 0.08
    assert err.mape_large < TARGET_LARGE


def test_gpus_per_thread_matches_how_each_log_was_run():
    """The manifest's gpus_per_thread is the log's own `nGpus N` header or `-g N` command line wherever the log
    states one value (a100-roce states two runs, nGpus 1 and 8, and is left at the default)."""
    import re

    checked = 0
    for name, entry in LOGS.items():
        text = (DATA / name).read_text()
        stated = {int(g) for g in re.findall(r"nGpus\s+(\d+)", text)}
        stated |= {int(g) for g in re.findall(r"_perf\S*\s.*?-g\s+(\d+)", text)}
        if len(stated) == 1:
            assert entry.get("gpus_per_thread", 1) == stated.pop(), name
            checked += 1
    assert checked >= 12


def test_bare_srun_label_line_is_blank():
    """NVIDIA/nccl-tests#290: the post ends in a bare ' 0:' label line, read as blank, not as a split row."""
    log = read_nccl_tests(DATA / "h100-shahizat-2node_all_reduce_perf.log")
    assert log.skipped == () and len(log.collectives) == 22
    assert {p.group_size for p in log.collectives} == {16}


def test_report_table_without_rank_lines_needs_ranks():
    """Cluster reports print only titles, rows and footer: the collective comes from the file name, the group
    from --ranks, and a wrong --ranks is caught by the busbw factor (15/16 for a 16-rank all-to-all)."""
    path = DATA / "b200-vultr-2node_alltoall_perf.log"
    with pytest.raises(SpecError, match=r"no '#  Rank \.\.\.' lines .*pass --ranks N"):
        read_nccl_tests(path)
    got = read_nccl_tests(path, ranks=16)
    assert {(p.op, p.group_size) for p in got.collectives} == {("all_to_all", 16)}
    assert len(got.collectives) == 2 * 27 and len(got.skipped) == 5  # 256 B - 16 GiB, five 0-byte rows
    with pytest.raises(SpecError):
        read_nccl_tests(path, ranks=8)
