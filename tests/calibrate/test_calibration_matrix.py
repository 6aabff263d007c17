"""Calibrating on one log of a cluster and predicting its other logs (issue #11 done-when), the NVLS / NVLSTree
and send/recv figures the fit moves on their own, the rule that a figure moves only through rows it binds
(linearise.binding_terms), and the prior's weight from the fitted log's own residuals (prior_weight.py)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.fit import fit_profile
from moesim.calibrate.bench_cost import benchmark_cost
from moesim.calibrate.nccl_error import log_error
from moesim.calibrate.nccl_table import calibration_matrix, matrix_clusters
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.calibrate.records import CollectivePoint, Measurements
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.hardware import EfficiencyTable
from moesim.specs.load import load_hardware

from calibrate_synth import HELDOUT_MATRIX

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"
MANIFEST = DATA / "logs.toml"
# "Stays within noise": the tolerance for a held-out log that calibration leaves as it was (0.3 pt MAPE).
NOISE = 0.003
# Pairs that get worse, with the figures (prior -> calibrated MAPE >= 1 MiB) when this list was written. Since
# session 6 (calib) a figure moves only through rows whose largest term is its own (linearise.binding_terms) and the
# prior weighs each figure by its stated uncertainty against the fitted log's effective number of rows
# (prior_weight.py), so a pair here is fitted on a figure its log does identify; every one but the last improves
# below 1 MiB, where that figure binds (test_known_worse_pairs_improve_below_one_mib): the >= 1 MiB rows that lose
# sit at 1-16 MiB, where the model's protocol / ramp shape misses (docs/collectives.md, "Calibrating on
# nccl-tests logs").
KNOWN_WORSE = {
    # (the 2-node all-gather / reduce-scatter -> 2-node all-reduce pairs, 14.0 -> 19.7 / 20.0 % at weight 3, left
    # this list in the mnfloor round: with the ring's worst chain priced the size check picks weight 10 for them and
    # the all-reduce improves, 14.0 -> 8.0 / 8.4 %)
    # (the three 1-node all-to-all -> 2-node all-reduce / all-gather / reduce-scatter pairs, 14.0 -> 14.7, 42.7 -> 44.3,
    # 44.0 -> 45.7 %, left this list in the p2plat round: the all-to-all's rows now set send/recv's own latency
    # (p2p_latency_us), not the NVLink hop latency that ring and NVLSTree use, and those logs stay at the prior)
    # qoofyk, both ways (6.2 -> 9.9 %, 5.8 -> 7.0 %; at weight 10 9.6, 6.7 %; after the ramp round): each log's tree/LL
    # rows (8 B - 32 KiB, summed hop latency 0.61-0.76 of their time at the session-6 start) mostly measure below the
    # prior, so the network hop latency falls 14 -> 8.6-9.4 us, which the other log's small rows confirm (< 1 MiB
    # 20.7 -> 13.7, 19.2 -> 6.3 %); the rows that lose are the 2-8 MiB NVLSTree / tree-LL128 rows, whose latency
    # share the same figure carries. (nvlschunk round, session 7: with NCCL's NVLS loops priced the priors move,
    # 4 -> 2 nodes 3.8 -> 5.0 %, 2 -> 4 nodes 8.4 -> 9.1 %.)
    # (session 8, calscope: a hop latency per protocol, fit_profile(latency_per_protocol=True), takes both off this list,
    # 4 -> 2 nodes 3.5 %, 2 -> 4 nodes 8.3 %, the tree/LL rows moving the network LL hop alone; it was not shipped as the
    # default because it costs B200 Vultr 13 better pairs and adds five worse ones: docs/collectives.md, "Session 8")
    # (session 9, calorder: `--hop-latency hierarchical`, facts inferred first, takes both off too, 4 -> 2 nodes 3.4 %,
    # 2 -> 4 nodes 8.2 %; not the default: 18 better pairs against the decision rule's 20, docs/collectives-history.md)
    # (session 13, heldout2: `--transfer protocol-hops`, the hop per protocol where that protocol's own rows set it in a
    # second fit and shared elsewhere, takes both off, 2 -> 4 nodes 9.93 -> 7.74 %, 4 -> 2 nodes 4.37 -> 3.43 %; not the
    # default: it costs B200 Vultr, whose 1-node all_gather fit re-picks NVLS at 2-4 MiB and drags the Simple NVLink hop
    # 3.4 -> 1.7 us, docs/collectives-history.md "Session 13 (heldout2)")
    # (session 14, pick: `--transfer pick-protocol-hops` fits and prices on NCCL's pick at the prior, which stops that
    # re-pick (Vultr's mean +0.01 -> -0.47 pt); 2 -> 4 nodes 9.93 -> 7.71 % leaves the list, 4 -> 2 nodes 4.37 -> 3.85 %
    # stays (the 4-node fit's Simple hop 14.27 -> 14.73 us on the prior's pick); qoofyk's mean +0.06 pt: opt-in,
    # docs/collectives-history.md "Session 14 (pick)")
    # (session 15, calband: each log's own >= 1 MiB rows refuse the hop its small rows set (hgx-2node 3.47 -> 4.34 %
    # in-sample); `--transfer hop-split` / `band-split` write the Simple hop at the prior and keep LL / LL128 at the
    # fitted hop: 2 -> 4 nodes 9.93 -> 7.66 %, 4 -> 2 nodes 4.37 -> 3.67 %, both within the noise, the < 1 MiB gain kept;
    # not the default: Together stays +1.38 pt under hop-split and gives back its < 1 MiB gain under band-split,
    # docs/collectives-history.md "Session 15 (calband)")
    ("h100-vm-4node-qoofyk_all_reduce_perf.log", "h100-hgx-2node-qoofyk_all_reduce_perf.log"),
    ("h100-hgx-2node-qoofyk_all_reduce_perf.log", "h100-vm-4node-qoofyk_all_reduce_perf.log"),
    # B200 Vultr 1 node: the all-reduce's ring/LL rows (64 B - 512 KiB, hop latency 0.52-0.68 of their time, 1.08-1.33x
    # the prior at the session-6 start) raise the NVLink hop latency 3.4 -> 3.85 us (4.4 before the ramp round), its
    # NVLS rows lower nvls_efficiency 0.742 -> 0.679; the all-gather / reduce-scatter's own small ring/LL rows agree
    # (< 1 MiB 11.9 -> 6.5, 12.6 -> 6.8 %), but their 1-4 MiB ring/LL rows, already faster than priced, lose: 8.5 ->
    # 10.0, 8.3 -> 9.3 %. The ring's W binds no row of the all-reduce (NVLS wins every large size), so it stays; at
    # weight 10 the size-check code of main moves it +1.9 % through minor shares, which happens to help (8.9, 8.3 %).
    # (session 7, fillcal) The all-reduce's rows bind no ring ramp (NVLS wins from 2 MiB), so the fill search leaves
    # its NVLink fill at the prior and these two pairs are unchanged.
    ("b200-vultr-1node_all_reduce_perf.log", "b200-vultr-1node_all_gather_perf.log"),
    ("b200-vultr-1node_all_reduce_perf.log", "b200-vultr-1node_reduce_scatter_perf.log"),
    # (the reduce-scatter -> all-gather pair, 8.5 -> 9.2 % from the same latency, left this list in session 7 (fillcal):
    # the reduce-scatter's 2-32 MiB ring rows, 7-21 % faster than priced but for the 8 MiB one, set the NVLink ramp's
    # fill 16 -> 11.3 MiB (calibrate/fill_fit.py), which the all-gather shares: 8.5 -> 8.6 %, < 1 MiB 11.9 -> 3.8 %; at
    # weight 10 9.6 -> 9.2 %)
    # (session 6) the 1-node all-to-all's 64 MiB - 1 GiB rows, bound by send/recv's NVLink line P, measure 1.05-1.12x
    # the prior, so P falls 1.8 %; the 1-node sendrecv (one peer per rank, not seven) matches the prior's P at
    # 512 MiB - 16 GiB (0.98-1.03x) and loses 11.6 -> 12.1 % (< 1 MiB 30.2 -> 30.4 %).
    # (session 12, heldout: `--transfer lines` keeps the all-to-all's line off send/recv, 12.06 -> 11.64 %, within the
    # noise of the prior; opt-in: docs/collectives-history.md "Session 12 (heldout)")
    ("b200-vultr-1node_alltoall_perf.log", "b200-vultr-1node_sendrecv_perf.log"),
    # --- newlogs (session 9): the Voltage Park H100 cluster (4 healthy logs, 12 new pairs, judged by no rule before).
    # Fitted on the 4-node all-reduce, whose tree/LL rows (8 B - 1 MiB) run faster than priced, the network hop latency
    # falls 14 -> 10.7 us (NVLSTree bandwidth +1 %). The 4-node all-gather's 1-32 MiB ring/LL128 rows, already 16-80 %
    # slower than priced, are priced faster still: 22.4 -> 24.7 % (< 1 MiB 8.8 -> 9.7 %: its 512 B - 8 KiB ring/LL rows,
    # priced within 4 %, go under). The 4-node broadcast (a known miss, slower than priced from 128 KiB) likewise:
    # 92.8 -> 97.0 % (< 1 MiB 70.7 -> 71.0 %); since session 10's broadcast model (bcast) 56.80 -> 59.24 %, its small
    # rows 61.06 -> 60.36 % (0.7 pt better, short of the 5 pt IMPROVE_BELOW_ONE_MIB asks: it stays in the set below).
    # (session 10, calpairs: `--transfer machinery` writes that hop to nonring_latency_us, set by tree rows only, and
    # both pairs stay at the prior, 22.41 / 92.81 %; opt-in, not the default: docs/collectives-history.md)
    ("h100-voltagepark-4node_all_reduce_perf.log", "h100-voltagepark-4node_all_gather_perf.log"),
    ("h100-voltagepark-4node_all_reduce_perf.log", "h100-voltagepark-4node_broadcast_perf.log"),
    # --- newlogs (session 9): H100 "example-cluster01" (11 healthy logs, 110 new pairs; rows 32 MiB - 16 GiB, so no
    # figure below 1 MiB). Each pair below moves one send/recv line P (p2p_bandwidth) that two point-to-point patterns
    # disagree on. Network P, +2.0 % fitted on the 10-node alltoall (its 32-512 MiB rows 6-42 % faster than priced,
    # >= 2 GiB within 2 %): the 2-node sendrecv, 2.4 % slower than priced, 2.45 -> 4.52 %. Network P, +4.5 % fitted on the
    # 2-node alltoall (4.3 % faster than priced): the 2-node sendrecv 2.45 -> 7.06 %, the 10-node alltoall's >= 2 GiB
    # rows go 5-6 % fast, 12.41 -> 12.96 %. Network P, -2.4 % fitted on the 2-node sendrecv: the two alltoalls, faster
    # than priced, 4.33 -> 6.62 % (2-node) and 12.41 -> 13.45 % (10-node). NVLink P, -9.3 % fitted on the 1-node alltoall
    # (9.5 % slower than priced): the 1-node sendrecv, 14.3 % faster than priced, 15.81 -> 19.90 % (the Vultr 1-node pair
    # above, again).
    # (session 10, calpairs: `--transfer machinery` keeps the one-peer line (p2p_factor) and the all-to-all's
    # (alltoall_p2p_factor) apart and takes five of these six to the prior; the 2-node -> 10-node alltoall pair stays,
    # 12.96 %; opt-in, not the default: docs/collectives-history.md "Session 10 (calpairs)")
    ("h100-xxrjun-2node_alltoall_perf.log", "h100-xxrjun-2node_sendrecv_perf.log"),
    ("h100-xxrjun-2node_alltoall_perf.log", "h100-xxrjun-10node_alltoall_perf.log"),
    ("h100-xxrjun-2node_sendrecv_perf.log", "h100-xxrjun-2node_alltoall_perf.log"),
    ("h100-xxrjun-1node_alltoall_perf.log", "h100-xxrjun-1node_sendrecv_perf.log"),
    # --- newlogs3 (session 11): example-cluster01's second node pair (cnode3-010/011, "2node-b": alltoall 4.3 %,
    # sendrecv 1.9 % from the prior), 46 fresh pairs, 9 worse | 5 better. The same disagreement as above on the one
    # network send/recv line P: fitted on an alltoall (faster than priced) the sendrecvs go fast, 2node -> 2node-b
    # sendrecv 1.9 -> 6.5 %, 2node-b -> 2node sendrecv 2.4 -> 7.0 %, 2node-b -> 2node-b 1.9 -> 6.4 %, 10node ->
    # 2node-b sendrecv 1.9 -> 3.9 %, 2node-b -> 10node alltoall 12.4 -> 12.9 %; fitted on a sendrecv (slower than
    # priced) the alltoalls go slow, 2node -> 2node-b alltoall 4.3 -> 6.6 %, 2node-b -> 2node / 2node-b alltoall 4.3 ->
    # 6.1 %, 2node-b -> 10node alltoall 12.4 -> 13.0 %. Under `--transfer machinery` eight of the nine go to the prior;
    # 2node-b alltoall -> 10node alltoall stays, 12.9 % (docs/collectives-history.md "Session 11 (newlogs3)").
    # (session 12, heldout: `--transfer lines`, the send/recv lines split as by machinery and every latency shared,
    # takes all 13 alltoall <-> sendrecv pairs of example-cluster01 here and above to the prior and loses no better
    # pair; the two alltoall -> 10node alltoall pairs stay, pairwise to pairwise. Not the default: the < 1 MiB sum of
    # the matrix rises 0.0002 pt, which rule (iii) as written forbids; docs/collectives-history.md "Session 12")
    ("h100-xxrjun-2node_alltoall_perf.log", "h100-xxrjun-2node-b_sendrecv_perf.log"),
    ("h100-xxrjun-2node_sendrecv_perf.log", "h100-xxrjun-2node-b_alltoall_perf.log"),
    ("h100-xxrjun-2node-b_alltoall_perf.log", "h100-xxrjun-10node_alltoall_perf.log"),
    ("h100-xxrjun-2node-b_alltoall_perf.log", "h100-xxrjun-2node_sendrecv_perf.log"),
    ("h100-xxrjun-2node-b_alltoall_perf.log", "h100-xxrjun-2node-b_sendrecv_perf.log"),
    ("h100-xxrjun-2node-b_sendrecv_perf.log", "h100-xxrjun-2node_alltoall_perf.log"),
    ("h100-xxrjun-2node-b_sendrecv_perf.log", "h100-xxrjun-2node-b_alltoall_perf.log"),
    # --- evidence (session 12): example-cluster01's other 10-node job ("10node-b", run 20260128-145054), 116 fresh
    # pairs. Under the per-peer sum (p2p_net_model "summed", before a2ap2p merged) its alltoall sat 12.3 % from the
    # prior and six pairs went worse on the one network send/recv line, as the 10-node pairs above. With the p2p
    # channels (a2ap2p, the default) its prior is 2.9 % and, as for the other 10-node run, the sendrecv pairs leave
    # (2node / 2node-b sendrecv -> 10node-b alltoall 2.9 -> 2.2 / 2.0 %; 10node-b alltoall -> 2node / 2node-b sendrecv
    # 2.4 -> 0.7, 1.9 -> 1.3 %). Left: the 10node-b alltoall fit on the 2-node alltoalls (4.3 % faster than priced,
    # 49 GB/s a NIC), 4.3 -> 7.2 % both (the 10-node run's pairs below, again); the 2node / 2node-b alltoall -> 10node-b
    # alltoall pairs, 2.9 -> 6.6 / 6.5 %, pairwise to pairwise (docs/collectives-history.md "Session 12 (evidence)").
    ("h100-xxrjun-2node_alltoall_perf.log", "h100-xxrjun-10node-b_alltoall_perf.log"),
    ("h100-xxrjun-2node-b_alltoall_perf.log", "h100-xxrjun-10node-b_alltoall_perf.log"),
    ("h100-xxrjun-10node-b_alltoall_perf.log", "h100-xxrjun-2node_alltoall_perf.log"),
    ("h100-xxrjun-10node-b_alltoall_perf.log", "h100-xxrjun-2node-b_alltoall_perf.log"),
    # session 12 (a2ap2p): with the flat all-to-all on NCCL's p2p channels (p2p_net_model "channels", the default) the
    # 10-node alltoall's prior is 2.8 % (was 12.4: its 32-256 MiB rows no longer pay 72 summed message latencies), its
    # >= 2 GiB rows 1.6-2.2 % slower than priced like every sendrecv's, so the one network line P it fits now agrees
    # with the sendrecvs: four pairs left this list (10node alltoall -> 2node / 2node-b sendrecv 2.4 -> 0.4, 1.9 ->
    # 1.0 %; 2node / 2node-b sendrecv -> 10node alltoall 2.8 -> 2.2 / 1.9 %). The 2-node alltoalls (4.3 % faster than
    # priced, 49 GB/s a NIC) are now the ones apart: fitted on the 10-node alltoall they go 4.3 -> 7.0 % (2node and
    # 2node-b); fitted on them the 10-node alltoall goes 2.8 -> 6.5 / 6.4 % (in the list above already).
    ("h100-xxrjun-10node_alltoall_perf.log", "h100-xxrjun-2node_alltoall_perf.log"),
    ("h100-xxrjun-10node_alltoall_perf.log", "h100-xxrjun-2node-b_alltoall_perf.log"),
    # session 12 (a2ap2p): Together's 2- and 4-node sendrecvs, 9.4 / 7.9 % from the prior before, 3.8 / 2.5 % with the
    # proxy's posts of a send's 4 parts priced (+9 us from 1 MiB). Fitted on either, the send/recv latency goes 14 ->
    # ~20 us (their 64-512 KiB rows are 15-48 % slower than priced), which the other's small rows take (4-node +47.6 ->
    # +19.5 % at 64 KiB) but its 1-16 MiB rows, now within 3 %, go 3-10 % fast: 2 -> 4 nodes 2.5 -> 4.4 %, 4 -> 2 nodes
    # 3.8 -> 5.9 % (both were better before: 7.9 -> 2.1, 9.4 -> 2.6 %).
    # (session 13, heldout2: the rows that ask the move are one-op sends (1-128 KiB, 1 part), the rows that refuse it
    # four-op sends (>= 512 KiB, 4 parts: scripts/heldout_causes.py); `--transfer p2p-ops` keeps π at the prior where a
    # log's op counts disagree, 2 -> 4 nodes 2.03 %, 4 -> 2 nodes 3.70 %, but gives back the < 1 MiB gain (7.5 -> 27.4,
    # 8.5 -> 23.5 %); not the default: docs/collectives-history.md "Session 13 (heldout2)")
    # (session 15, calband: the fitted log's own >= 1 MiB rows refuse the move too, 2-node 3.79 -> 5.13 %, 4-node 2.50
    # -> 4.92 % in-sample; `--transfer band-guard` writes π at the prior (2 -> 4 nodes 2.03 %, 4 -> 2 nodes 3.70 %, all
    # six Together pairs at or under their prior) and gives back the < 1 MiB gain as p2p-ops does: not the default,
    # docs/collectives-history.md "Session 15 (calband)")
    ("b200-together-2node_sendrecv_perf.log", "b200-together-4node_sendrecv_perf.log"),
    ("b200-together-4node_sendrecv_perf.log", "b200-together-2node_sendrecv_perf.log"),
    # session 11 (ramp): NCCL's per-channel ring LL128 / tree caps (per_channel_caps, the default) move the priors
    # these pairs are judged against (Vultr 1-node all_gather 8.5 -> 8.9 %, Voltage Park 4-node all_reduce 9.3 ->
    # 8.3 %) more than the fits: the Vultr 1-node reduce-scatter's NVLink fill no longer carries over to the
    # all-gather, whose 32-512 MiB LL128 rows are now capped (8.9 -> 9.6 %); the Voltage Park all-gather's fit
    # moves the all-reduce 8.3 -> 8.7 % (9.3 -> 9.5 % before, within the noise then); below 1 MiB the Vultr pair
    # improves (11.9 -> 4.0 %), the Voltage Park one does not (14.5 -> 15.0 %: WORSE_BELOW_ONE_MIB_TOO)
    ("b200-vultr-1node_reduce_scatter_perf.log", "b200-vultr-1node_all_gather_perf.log"),
    ("h100-voltagepark-4node_all_gather_perf.log", "h100-voltagepark-4node_all_reduce_perf.log"),
    # --- newlogs4 (session 13): MIT ORCD's Engaging B200 nodes, 1 node and a 2-node pair (-g 8), 132 fresh pairs, 5
    # worse | 10 better under --transfer shared (docs/collectives-history.md, "Session 13 (newlogs4)"). The
    # point-to-point line, as on example-cluster01: the sendrecvs measure 5-18 % faster than priced, so fitted on them
    # the p2p line rises (2-node: 50.6 GB/s on the network; 1-node: 670 GB/s on NVLink) and the alltoalls, already
    # slower than priced, go further off: 2node sendrecv -> 2node alltoall 279.9 -> 293.2 %, 1node sendrecv -> 1node
    # alltoall 26.1 -> 28.2 % (--transfer machinery / lines keep them at the prior).
    ("b200-engaging-2node_sendrecv_perf.log", "b200-engaging-2node_alltoall_perf.log"),
    ("b200-engaging-1node_sendrecv_perf.log", "b200-engaging-1node_alltoall_perf.log"),
    # The NVLink figures between the 1-node logs (all three rules alike): the broadcast's and the reduce-scatter's
    # plateaus (691 / 669 GB/s one way fitted) carry to the all-gather, whose 16 GiB row runs at 656 GB/s busbw (23.6 ->
    # 26.0 / 24.5 %); the all-reduce's small rows raise the NVLink hop latency 3.4 -> 5.6 us, which the broadcast's
    # 1-16 MiB LL / LL128 rows, measured at or under the priced time from 16 MiB, do not take (13.8 -> 17.0 %). The same
    # all-reduce fit takes the 2-node ring logs and broadcast down 38-59 pt and the 1-node all-gather / reduce-scatter 4.6 / 3.2 pt.
    ("b200-engaging-1node_broadcast_perf.log", "b200-engaging-1node_all_gather_perf.log"),
    ("b200-engaging-1node_reduce_scatter_perf.log", "b200-engaging-1node_all_gather_perf.log"),
    ("b200-engaging-1node_all_reduce_perf.log", "b200-engaging-1node_broadcast_perf.log"),
    # --- newlogs5 (session 14): 208 fresh pairs (Engaging's second 2-node pair, the AICR node b0027, Together's run3
    # 2-node sendrecv), 8 worse | 15 better under --transfer shared (docs/collectives-history.md, "Session 14
    # (newlogs5)"). The point-to-point line again, as session 13's first pair: fitted on either pair's sendrecv (5-8 %
    # faster than priced) the network p2p line rises and the 2-node alltoalls, 2.8-2.9x slower than priced already, go
    # further off: 2node sendrecv -> 2node-b alltoall 285.2 -> 298.1 %, 2node-b sendrecv -> 2node alltoall 279.9 ->
    # 288.0 %, 2node-b sendrecv -> 2node-b alltoall 285.2 -> 293.1 % (--transfer machinery / lines keep all three at the
    # prior).
    ("b200-engaging-2node_sendrecv_perf.log", "b200-engaging-2node-b_alltoall_perf.log"),
    ("b200-engaging-2node-b_sendrecv_perf.log", "b200-engaging-2node_alltoall_perf.log"),
    ("b200-engaging-2node-b_sendrecv_perf.log", "b200-engaging-2node-b_alltoall_perf.log"),
    # The AICR node's all-reduce, as the Engaging node's: its rows raise the NVLink hop latency +41 % (and the NVLS
    # bandwidth +5 %; scripts/heldout_pairs.py), which the broadcast's LL128 rows do not take: 16 MiB -3.3 -> -12.0 %,
    # 64 MiB flips from Simple to LL128 (-2.4 -> -8.9 %), 256 MiB - 1 GiB -3.3 -> -5.4 %; 5.3 -> 7.6 % (all five rules
    # alike; 7.4 under protocol-hops).
    ("b200-aicr-1node_all_reduce_perf.log", "b200-aicr-1node_broadcast_perf.log"),
    # Together's run3 2-node sendrecv against run2's 2- and 4-node ones: the pair above's reading, on a third log. Each
    # of the three is 10-48 % slower than priced at 64-512 KiB and within -1 to +8 % from 1 MiB; fitted on one, the
    # send/recv latency rises and the other's 1-16 MiB rows go fast: 2node -> 2node-r3 4.3 -> 4.9 %, 4node -> 2node-r3
    # 4.3 -> 5.5 %, 2node-r3 -> 2node 3.8 -> 4.7 %, 2node-r3 -> 4node 2.5 -> 4.2 %. --transfer p2p-ops takes the first
    # to 3.3 % and keeps the second at 4.2 %; the last two it leaves as shared does.
    ("b200-together-2node_sendrecv_perf.log", "b200-together-2node-r3_sendrecv_perf.log"),
    ("b200-together-4node_sendrecv_perf.log", "b200-together-2node-r3_sendrecv_perf.log"),
    ("b200-together-2node-r3_sendrecv_perf.log", "b200-together-2node_sendrecv_perf.log"),
    ("b200-together-2node-r3_sendrecv_perf.log", "b200-together-4node_sendrecv_perf.log"),
    # --- newlogs6 (session 15): the Engaging Ubuntu pair (node5700 + node5701, cluster b200-engaging-ubuntu), 30 fresh
    # pairs, 2 worse | 0 better under --transfer shared (docs/collectives-history.md, "Session 15 (newlogs6)"). The
    # network send/recv line between the pair's sendrecv (3-16 % faster than priced) and its alltoall (2.2x slower), as
    # on both Rocky pairs, both ways: sendrecv -> alltoall 122.7 -> 129.7 %, alltoall -> sendrecv 6.3 -> 6.7 %
    # (--transfer machinery / lines keep both at the prior).
    ("b200-engaging-ubuntu-2node_sendrecv_perf.log", "b200-engaging-ubuntu-2node_alltoall_perf.log"),
    ("b200-engaging-ubuntu-2node_alltoall_perf.log", "b200-engaging-ubuntu-2node_sendrecv_perf.log"),
    # --- newlogs7 (session 16): Together's run1 2-node sendrecv (gpu-149 / -150, 50 iterations; cluster b200-together),
    # 6 fresh pairs, 3 worse | 2 better at >= 1 MiB under --transfer shared (docs/collectives-history.md, "Session 16
    # (newlogs7)"; scripts/newlogs7_check.py --diagnose). The send/recv latency of the pairs above, the other way: the
    # three older Together logs are slower than priced at 64-512 KiB, so fitted on any of them the network send/recv
    # latency rises 41-52 % (and the p2p bandwidth falls 0-3 %); run1's 1-8 MiB rows already run fast (1 MiB -10 %)
    # and go further: 2node -> 2node-r1 6.63 -> 8.19 %, 4node -> 2node-r1 6.63 -> 8.99 %, 2node-r3 -> 2node-r1 6.63 ->
    # 7.66 % (1 MiB -10.3 -> -20 to -21 %); below 1 MiB the same three lose too (8.96 -> 14.55 / 16.36 / 13.20 %: its
    # small rows are the faster ones), so they are not in IMPROVE_BELOW_ONE_MIB (a sendrecv held out). --transfer
    # p2p-ops takes the first to 5.8 % and keeps the second at 6.6 %; the third it leaves as shared does (7.7 %).
    ("b200-together-2node_sendrecv_perf.log", "b200-together-2node-r1_sendrecv_perf.log"),
    ("b200-together-4node_sendrecv_perf.log", "b200-together-2node-r1_sendrecv_perf.log"),
    ("b200-together-2node-r3_sendrecv_perf.log", "b200-together-2node-r1_sendrecv_perf.log"),
}
# Pairs allowed to lose more than the 11 pt every other pair stays under (test_no_same_cluster_pair_gets_worse), with
# their figure: the held-out log misses by far already (KNOWN_MISSES, tests/calibrate/test_real_nccl_logs.py).
LOSS_BOUND = {("b200-engaging-2node_sendrecv_perf.log", "b200-engaging-2node_alltoall_perf.log"): 0.14,  # 279.9 -> 293.2 %
              # newlogs5 (session 14): the same line on the second pair's alltoall, 285.2 -> 298.1 %
              ("b200-engaging-2node_sendrecv_perf.log", "b200-engaging-2node-b_alltoall_perf.log"): 0.14}
# Known-worse pairs whose held-out small rows do not improve either (the figures above).
WORSE_BELOW_ONE_MIB_TOO = {("h100-voltagepark-4node_all_reduce_perf.log", "h100-voltagepark-4node_all_gather_perf.log"),
                           ("h100-voltagepark-4node_all_reduce_perf.log", "h100-voltagepark-4node_broadcast_perf.log"),
                           # session 11 (ramp): < 1 MiB 14.5 -> 15.0 % (the all-gather's fit moves a bandwidth and the
                           # NVLink hop together; the all-reduce's tree rows below 1 MiB do not gain)
                           ("h100-voltagepark-4node_all_gather_perf.log", "h100-voltagepark-4node_all_reduce_perf.log")}
# The KNOWN_WORSE pairs whose fitted figure is a latency the held-out log's own small rows bind (all but the Vultr
# sendrecv pair, the three Voltage Park pairs and the example-cluster01 pairs, which fit a bandwidth).
IMPROVE_BELOW_ONE_MIB = tuple(pair for pair in KNOWN_WORSE
                              if "sendrecv" not in pair[1] and pair not in WORSE_BELOW_ONE_MIB_TOO
                              and "xxrjun" not in pair[1]  # example-cluster01's logs have no rows below 32 MiB
                              and "engaging" not in pair[1]  # nor the Engaging B200 logs below 1 MiB (session 13)
                              and "aicr" not in pair[1])  # nor the AICR B200 node's (session 14)


def errors(name, hardware=None):
    return log_error(read_nccl_tests(DATA / name).collectives, hardware or load_hardware("h100-sxm"))


@HELDOUT_MATRIX
def test_matrix_covers_the_clusters_with_several_healthy_logs():
    clusters = matrix_clusters(MANIFEST)
    assert {"h100-gjaion", "h100-qoofyk", "gb200-coreweave"} <= set(clusters)
    assert len(clusters["h100-gjaion"]) == 3
    pairs = calibration_matrix(MANIFEST)
    assert len(pairs) == sum(len(logs) * (len(logs) - 1) for logs in clusters.values())


@HELDOUT_MATRIX
def test_no_same_cluster_pair_gets_worse():
    """Every (fitted, held-out) pair of one cluster: the calibrated MAPE >= 1 MiB is not above the prior's."""
    worse = [(p.fitted_on, p.held_out, p.prior_mape, p.calibrated_mape) for p in calibration_matrix(MANIFEST)
             if p.calibrated_mape > p.prior_mape + NOISE and (p.fitted_on, p.held_out) not in KNOWN_WORSE]
    assert not worse
    # the known ones stay bounded: none loses more than 11 pt (10 before (llhop) the published NVLink LL / LL128 hop
    # brought the Vultr 2-node all-reduce prior from 14.0 to 10.5 %: fitted on the ring all-gather / reduce-scatter it
    # is 20.4 / 20.8 %, was 19.7 / 20.0 %)
    assert all(p.calibrated_mape < p.prior_mape + LOSS_BOUND.get((p.fitted_on, p.held_out), 0.11)
               for p in calibration_matrix(MANIFEST))


@HELDOUT_MATRIX
def test_calibration_helps_where_the_fitted_log_carries_over():
    """Pairs that improve (docs/collectives.md, the held-out table). gj-aion 8 -> 2 nodes left this list
    in session 6 (8.7 -> 6.7 % with the size check's weight 3 on every figure, 8.5 % now): the 8-node log's residuals
    run in long same-sign stretches (2.5 effective rows of 28), so the prior holds it; 4 -> 8 nodes took its place
    (13.9 -> 10.9 %, was left at the prior by the size check's weight 100).
    nvlschunk round (session 7): NCCL's NVLS / NVLSTree loops brought the priors closer, so less is left to gain,
    the calibrated figures lower than before but for GB200: 2 -> 8 nodes 10.3 -> 9.5 % (was 13.9 -> 11.6), 4 -> 8 nodes
    10.3 -> 10.1 % (was 13.9 -> 10.9; now within 0.3 pt, so it left this list), GB200 1 -> 2 racks 11.5 -> 9.7 %
    (was 12.5 -> 8.4); the Vultr 1-node all-reduce -> 2-node all-reduce pair gains 1.3 pt (11.0 -> 9.7 %, was
    10.5 -> 8.8). Oddities round (session 8): the 2-rack log is read as the 128 ranks its rows say, not 144: GB200
    1 -> 2 racks 12.5 -> 10.7 %."""
    gain = {(p.fitted_on, p.held_out): p.prior_mape - p.calibrated_mape for p in calibration_matrix(MANIFEST)}
    for fitted, held, least in [("h100-ib-2node-gjaion", "h100-ib-8node-gjaion", 0.006),
                                ("gb200-coreweave-1rack", "gb200-coreweave-2rack", 0.015),
                                ("b200-vultr-1node", "b200-vultr-2node", 0.01)]:
        pair = (f"{fitted}_all_reduce_perf.log", f"{held}_all_reduce_perf.log")
        assert gain[pair] > least, (pair, gain[pair])


@HELDOUT_MATRIX
def test_known_worse_pairs_improve_below_one_mib():
    """The KNOWN_WORSE pairs fitted on a latency lose at >= 1 MiB but the figure is the held-out log's own: its rows
    below 1 MiB, which that latency binds, improve by 5 pt or more (the list's comments have the figures)."""
    pairs = {(p.fitted_on, p.held_out): p for p in calibration_matrix(MANIFEST)}
    for pair in IMPROVE_BELOW_ONE_MIB:
        p = pairs[pair]
        assert p.calibrated_mape_small < p.prior_mape_small - 0.05, (pair, p.prior_mape_small, p.calibrated_mape_small)


def test_an_eight_node_fit_leaves_the_nvlink_lines_of_the_two_node_log(tmp_path):
    """The pair that got worse before (9.8 -> 12.0 %): the 8-node log's 1-16 MiB tree/LL128 rows (NVLink-bound in the
    model) lowered the NVLink bandwidth, and the 2-node log's NVLSTree line followed it. Now a multi-node row sets
    only the outermost level's figures, and NVLS has a line of its own: at the fixed weight 10 neither moves."""
    prior = load_hardware("h100-sxm")
    result = calibrate([str(DATA / "h100-ib-8node-gjaion_all_reduce_perf.log")], "h100-sxm", tmp_path / "c.toml",
                       bootstrap=0, holdout_fraction=0.0, prior_weight=10.0)
    fitted = {p.name: p for p in result.fit.parameters}
    assert not fitted["nvlink.bandwidth"].fitted and not fitted["nvlink.latency"].fitted
    assert not fitted["nvlink.nvls_bandwidth"].fitted  # its NVLSTree rows are network-bound: NVLS is not seen
    assert fitted["infiniband.nvlstree_bandwidth"].fitted
    nv, nv0 = result.profile.interconnect[0], prior.interconnect[0]
    usable, usable0 = (lv.link_bw_bytes_per_s * lv.bw_efficiency.at(1.0) for lv in (nv, nv0))
    assert usable * nv.nvls_efficiency == pytest.approx(usable0 * nv0.nvls_efficiency, rel=1e-5)
    two = "h100-ib-2node-gjaion_all_reduce_perf.log"
    assert errors(two, result.profile).mape_large < errors(two).mape_large


def test_a_two_rack_log_moves_nvlstree_not_single_rack_nvls(tmp_path):
    """GB200: 2 racks run NVLSTree, 1 rack NVLS. The ratio of the two carries no prior, so the 2-rack log moves it
    and leaves the 1-rack figure (which the 1-rack log set) alone; the 1-rack log moves both together."""
    prior = load_hardware("gb200-nvl72")
    out = tmp_path / "two.toml"
    calibrate([str(DATA / "gb200-coreweave-2rack_all_reduce_perf.log")], "gb200-nvl72", out, bootstrap=0,
              holdout_fraction=0.0, nccl_ranks=128)  # 128 ranks by its rows (logs.toml, SOURCES.md)
    raw = tomllib.loads(out.read_text())["interconnect"][0]
    assert raw["nvls_efficiency"] == pytest.approx(prior.interconnect[0].nvls_efficiency, rel=1e-5)
    assert raw["nvlstree_efficiency"] < 0.95 * prior.interconnect[0].nvls_efficiency
    one_rack = read_nccl_tests(DATA / "gb200-coreweave-1rack_all_reduce_perf.log").collectives
    assert log_error(one_rack, load_hardware(out)).mape_large == pytest.approx(log_error(one_rack, prior).mape_large,
                                                                               abs=NOISE)


def test_nvls_and_nvlstree_figures_are_recovered_exactly_from_synthetic_logs():
    """Data made by the model (2 GPUs, 1, 2 and 4 H100 nodes) from known figures: the fit, prior weight chosen as on
    real logs, returns every figure the rows see, NVLS and NVLSTree included. The network-bound rows here are all
    NVLSTree's: they set its inter-node line U, and the network W (ring / send/recv) keeps its prior."""
    prior = load_hardware("h100-sxm")
    nv, ib = prior.interconnect
    truth = dataclasses.replace(prior, interconnect=(
        dataclasses.replace(nv, latency_s=4.1e-6, bw_efficiency=EfficiencyTable.constant(0.78), nvls_efficiency=0.70,
                            nvlstree_efficiency=0.62),
        dataclasses.replace(ib, latency_s=16.5e-6, bw_efficiency=EfficiencyTable.constant(0.90))))
    model = default_model(truth)
    points = tuple(CollectivePoint(op="all_reduce", size_bytes=2.0**e, group_size=n, source=f"synthetic:{n}:{e}",
                                   time_s=model.cost("all_reduce", 2.0**e, Group(size=n, devices=n)).time_s)
                   for n in (2, 8, 16, 32) for e in range(12, 34))
    fit = fit_profile(Measurements(collectives=points), prior, fit_keys=set(), bootstrap=0)
    w_nv = nv.link_bw_bytes_per_s * 0.78
    (_, a0, w0, _, _), (_, a1, w1, _, w1_fitted) = fit.levels
    assert (a0, w0, a1) == pytest.approx((4.1e-6, w_nv, 16.5e-6), rel=1e-6)
    assert not w1_fitted and w1 == pytest.approx(ib.link_bw_bytes_per_s * 0.94)
    assert fit.nvls_bandwidths["nvlink"] == pytest.approx((0.70 * w_nv, 0.62 * w_nv), rel=1e-6)
    assert fit.extra_bandwidths[("infiniband", "nvlstree_net_factor")] == pytest.approx(ib.link_bw_bytes_per_s * 0.90,
                                                                                         rel=1e-6)
    assert fit.overall.max_abs_pct_error < 1e-6


def test_send_recv_and_nvlstree_network_lines_are_their_own(tmp_path):
    """B200 2 nodes: ring all-gather over the NICs is ~20 % slower than the model and send/recv ~2.4x, while the
    all-reduce's NVLSTree is within 3 %. Fitting the send/recv log moves send/recv's line (p2p_factor), not the
    network W, so the all-reduce log does not get worse (it did: 14 -> 44 % when W moved).
    Session 12 (a2ap2p): with the proxy's posts of a send/recv's parts priced (p2p_net_model "channels", the
    default), the fit frees the send/recv latency as well as its line (2 parameters, was 1), the log's residuals are
    one same-sign run (1 effective row, was 3.3), so the prior weight is the largest (8) and the line stays near the
    prior (p2p_factor 0.99, was 0.42: this log, not held to the targets, is 2.4x slower than priced); W still does not
    move. Under p2p_net_model "summed" the fit is as before (0.42)."""
    prior = load_hardware("b200")
    out = tmp_path / "sr.toml"
    calibrate([str(DATA / "b200-vultr-2node_sendrecv_perf.log")], "b200", out, bootstrap=0, holdout_fraction=0.0,
              nccl_ranks=16)
    raw = tomllib.loads(out.read_text())["interconnect"]
    assert raw[1]["p2p_factor"] < 1.0
    fitted = load_hardware(out)
    ib, ib0 = fitted.interconnect[1], prior.interconnect[1]
    assert ib.link_bw_bytes_per_s * ib.bw_efficiency.at(1.0) == ib0.link_bw_bytes_per_s * ib0.bw_efficiency.at(1.0)
    reduce = read_nccl_tests(DATA / "b200-vultr-2node_all_reduce_perf.log", ranks=16).collectives
    assert log_error(reduce, fitted).mape_large <= log_error(reduce, prior).mape_large + NOISE  # was 14 -> 44 %
    sendrecv = read_nccl_tests(DATA / "b200-vultr-2node_sendrecv_perf.log", ranks=16).collectives
    assert log_error(sendrecv, fitted).mape_large < log_error(sendrecv, prior).mape_large


def test_factors_default_to_one_and_are_checked():
    level = load_hardware("b200").interconnect[1]
    assert level.p2p_factor is None and level.nvlstree_net_factor is None
    for key in ("p2p_factor", "nvlstree_net_factor"):
        with pytest.raises(SpecError, match=key):
            dataclasses.replace(level, **{key: 5.0})
        with pytest.raises(SpecError, match=key):
            dataclasses.replace(level, **{key: 0.0})


def test_prior_weight_is_checked(tmp_path):
    with pytest.raises(SpecError, match="prior weight"):
        calibrate([str(DATA / "h100-ib-2node-gjaion_all_reduce_perf.log")], "h100-sxm", tmp_path / "c.toml",
                  bootstrap=0, holdout_fraction=0.0, prior_weight=0.0)


def test_cli_prior_weight_bad_value_is_one_line(tmp_path, capsys):
    from moesim.cli import main

    code = main(["calibrate", str(DATA / "h100-ib-2node-gjaion_all_reduce_perf.log"), "--hardware", "h100-sxm",
                 "-o", str(tmp_path / "c.toml"), "--prior-weight", "lots"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--prior-weight" in err


def test_nvlstree_efficiency_key_is_validated(tmp_path):
    level = load_hardware("h100-sxm").interconnect[0]
    assert level.nvlstree_efficiency is None  # unset: NVLSTree uses nvls_efficiency, as NCCL's tuner
    with pytest.raises(SpecError, match="nvlstree_efficiency"):
        dataclasses.replace(level, nvlstree_efficiency=1.2)
    with pytest.raises(SpecError, match="nvlstree_efficiency"):
        dataclasses.replace(level, nvls_efficiency=0.0, nvlstree_efficiency=0.5)


def test_p2p_latency_key_defaults_to_the_level_latency_and_prices_only_send_recv(tmp_path):
    """interconnect.p2p_latency_us: unset = latency_us (the prices of before); set, it moves all-to-all and send/recv
    and nothing the tuner prices; loader checked like latency_us."""
    prior = load_hardware("b200")
    nv, ib = prior.interconnect
    assert nv.p2p_latency_s is None and ib.p2p_latency_s is None

    def with_p2p(factor):
        levels = tuple(dataclasses.replace(lv, p2p_latency_s=lv.latency_s * factor) for lv in prior.interconnect)
        return default_model(dataclasses.replace(prior, interconnect=levels))

    base, same, slow = default_model(prior), with_p2p(1.0), with_p2p(3.0)
    for n in (8, 16):
        group = Group(size=n, devices=n)
        for op in ("all_to_all", "send_recv", "all_reduce", "all_gather"):
            for size in (2.0**10, 2.0**20, 2.0**30):
                t0 = benchmark_cost(base, op, size, group)[0]
                assert benchmark_cost(same, op, size, group)[0] == t0
                if op in ("all_to_all", "send_recv"):
                    assert benchmark_cost(slow, op, size, group)[0] > t0
                else:
                    assert benchmark_cost(slow, op, size, group)[0] == t0
    with pytest.raises(SpecError, match="p2p_latency"):
        dataclasses.replace(nv, p2p_latency_s=-1e-6)
    text = (Path(__file__).resolve().parents[2] / "hardware_profiles" / "b200.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("latency_us = ", "p2p_latency_us = -1.0\nlatency_us = ", 1))
    with pytest.raises(SpecError, match="p2p_latency_us"):
        load_hardware(bad)


def test_send_recv_latency_is_recovered_from_synthetic_logs():
    """One node of 8 H100: all-reduce, all-gather and all-to-all rows made by the model from an NVLink latency and a
    send/recv latency of their own. The fit returns both: the all-to-all rows set π (and P), the all-reduce rows α and
    V, the all-gather's ring rows W (since the ramp round NVLS wins every all-reduce size W would bind, and a figure
    no row binds keeps its prior: linearise.binding_terms)."""
    prior = load_hardware("h100-sxm")
    nv, ib = prior.interconnect
    truth = dataclasses.replace(prior, interconnect=(
        dataclasses.replace(nv, latency_s=4.1e-6, p2p_latency_s=9.0e-6, bw_efficiency=EfficiencyTable.constant(0.78),
                            p2p_factor=0.85),
        ib))
    model, group = default_model(truth), Group(size=8, devices=8)
    points = tuple(CollectivePoint(op=op, size_bytes=2.0**e, group_size=8, source=f"synthetic:{op}:{e}",
                                   time_s=benchmark_cost(model, op, 2.0**e, group)[0], nccl_tests=True)
                   for op in ("all_reduce", "all_gather", "all_to_all") for e in range(10, 34))
    fit = fit_profile(Measurements(collectives=points), prior, fit_keys=set(), bootstrap=0)
    (_, a0, _, a0_fitted, _), (_, a1, _, a1_fitted, _) = fit.levels
    assert a0_fitted and a0 == pytest.approx(4.1e-6, rel=1e-5)
    assert fit.p2p_latencies["nvlink"] == pytest.approx(9.0e-6, rel=1e-5)
    assert not a1_fitted and fit.p2p_latencies["infiniband"] == pytest.approx(ib.latency_s, rel=1e-12)  # no row crosses
    assert fit.overall.max_abs_pct_error < 1e-5


def test_an_alltoall_log_moves_the_send_recv_latency_not_the_ring_latency(tmp_path):
    """The Vultr 1-node all-to-all (a pairwise ncclSend / ncclRecv exchange) once moved the NVLink latency that ring
    and NVLSTree share, and the cluster's 2-node logs got worse (14.0 -> 14.7, 42.7 -> 44.3, 44.0 -> 45.7 %). Now it
    sets the send/recv latency π (p2p_latency_us) and leaves them where they were."""
    prior = load_hardware("b200")
    out = tmp_path / "a2a.toml"
    result = calibrate([str(DATA / "b200-vultr-1node_alltoall_perf.log")], "b200", out, bootstrap=0,
                       holdout_fraction=0.0, nccl_ranks=8)
    fitted = {p.name: p for p in result.fit.parameters}
    assert fitted["nvlink.p2p_latency"].fitted and not fitted["nvlink.latency"].fitted
    raw = tomllib.loads(out.read_text())["interconnect"]
    assert raw[0]["p2p_latency_us"] == pytest.approx(fitted["nvlink.p2p_latency"].value * 1e6, rel=1e-5)
    assert raw[0]["latency_us"] == pytest.approx(prior.interconnect[0].latency_s * 1e6)
    assert "p2p_latency_us" not in raw[1]
    for name in ("all_reduce", "all_gather", "reduce_scatter"):
        held = read_nccl_tests(DATA / f"b200-vultr-2node_{name}_perf.log", ranks=16).collectives
        assert log_error(held, result.profile).mape_large <= log_error(held, prior).mape_large + NOISE, name


def test_a_ring_log_leaves_send_recv_prices_alone(tmp_path):
    """A fit on all-reduce rows only moves the network latency (and W); send/recv keeps its own latency and line,
    written as p2p_latency_us and p2p_factor, so all-to-all and send/recv cost what they cost under the prior."""
    prior = load_hardware("h100-sxm")
    out = tmp_path / "ar.toml"
    result = calibrate([str(DATA / "h100-ib-8node-gjaion_all_reduce_perf.log")], "h100-sxm", out, bootstrap=0,
                       holdout_fraction=0.0)
    fitted = {p.name: p for p in result.fit.parameters}
    assert fitted["infiniband.latency"].fitted and not fitted["infiniband.p2p_latency"].fitted
    assert tomllib.loads(out.read_text())["interconnect"][1]["p2p_latency_us"] == pytest.approx(
        prior.interconnect[1].latency_s * 1e6)
    before, after = default_model(prior), default_model(result.profile)
    for n in (16, 64):
        group = Group(size=n, devices=n)
        for op in ("all_to_all", "send_recv"):
            for size in (2.0**12, 2.0**22, 2.0**32):
                assert benchmark_cost(after, op, size, group)[0] == pytest.approx(
                    benchmark_cost(before, op, size, group)[0], rel=1e-5), (op, n, size)
