"""NCCL's per-size channel and thread count (ramp round, issue 11): once the tuner has picked a ring or tree
(algorithm, protocol), NCCL 2.30.7 src/enqueue.cc topoGetAlgoInfo runs small messages on fewer channels and then
fewer threads; moesim prices that share of the full-size rate on the wire only (nccl_channels.channel_share), so NCCL's pick
is unchanged. Constants: nccl_tuning.toml [channels]."""

from __future__ import annotations

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_channels import channel_share, ring_tree_channels
from moesim.collectives.select import default_model
from moesim.specs.load import load_hardware

MAX_THREADS = {"LL": 512, "LL128": 640, "Simple": 512}  # NCCL_{LL,LL128,SIMPLE}_MAX_NTHREADS (device.h)
THRESHOLD = {"LL": 8, "LL128": 8, "Simple": 64}  # NCCL_{LL,LL128,SIMPLE}_THREAD_THRESHOLD (comm.h)


def nccl_loop(algorithm, protocol, n_bytes, n_ranks, n_channels):
    """topoGetAlgoInfo's ring / tree branch as written in NCCL 2.30.7, step by step (returns nc, total threads)."""
    nc, nt = n_channels, MAX_THREADS[protocol]
    threshold = THRESHOLD[protocol] * (n_ranks if algorithm == "ring" and protocol == "LL" else 1)
    while n_bytes < nc * nt * threshold:
        if nc >= 2:
            nc -= 1
        else:
            break
    while n_bytes < nc * nt * threshold:
        if nt % 128 == 0:
            nt //= 2
        else:
            break
    if protocol == "Simple":
        nt += 32 if algorithm == "ring" else 4 * 32
    nt = 3 * 32 if nt // 32 < 3 else nt
    if algorithm == "tree":
        nt = 640
    return nc, nt


def test_constants_are_nccls():
    ch = tuning()["channels"]
    assert ch["max_threads"] == MAX_THREADS and ch["thread_threshold"] == THRESHOLD
    assert (ch["sync_warp"], ch["min_threads"], ch["all_threads"]) == (32, 96, 640)


@pytest.mark.parametrize("algorithm", ["ring", "tree"])
@pytest.mark.parametrize("protocol", ["LL", "LL128", "Simple"])
@pytest.mark.parametrize("n", [8, 16, 64])
def test_channel_and_thread_count_follow_ncclS_loop(algorithm, protocol, n):
    for n_channels in (16, 32):
        for size in [1, 8, 100, 4096, 5000, 2**14, 2**15, 40000, 2**17, 2**18, 300000, 2**20, 2**22, 2**24]:
            nc, nt_total = nccl_loop(algorithm, protocol, size, n, n_channels)
            got_nc, data_threads = ring_tree_channels(algorithm, protocol, float(size), n, n_channels)
            sync = 32 if algorithm == "ring" and protocol == "Simple" else 0
            assert (got_nc, data_threads + sync) == (nc, nt_total), (size, n_channels)


def test_share_is_one_at_full_size_and_small_below():
    # ring Simple: 16 x 512 threads x 64 B = 512 KiB before a channel is dropped; ring LL over 16 ranks 16 x 512 x 8 x 16
    assert channel_share("ring", "Simple", 2.0**19, 8, 16) == 1.0
    assert channel_share("ring", "Simple", 2.0**19 - 1, 8, 16) == pytest.approx(15 / 16)
    assert channel_share("ring", "LL", 2.0**20, 16, 16) == 1.0
    assert channel_share("ring", "LL", 2.0**18, 16, 16) == pytest.approx(4 / 16)
    # one channel, then threads: 64 B of ring LL over 8 ranks runs 1 channel of 96 threads (of 16 x 512)
    assert channel_share("ring", "LL", 64.0, 8, 16) == pytest.approx(96 / (16 * 512))
    # a tree keeps all 640 threads on its one channel
    assert channel_share("tree", "LL", 64.0, 16, 16) == pytest.approx(1 / 16)


def test_the_channel_count_is_wire_only(monkeypatch):
    """NCCL picks with its table, then cuts channels: against the same model with every channel running, each ring /
    tree candidate's time + tuner offset (what the pick ranks by) is unchanged and its transfer is / share (LL: the
    share on the uncapped rate, then NCCL's LL cap on the total, so between the two)."""
    from moesim.collectives import nccl_plan

    hw, group = load_hardware("h100-sxm"), Group(size=16, devices=16)
    sizes = (64.0, 2.0**12, 2.0**16, 2.0**18, 2.0**22)
    cut = {s: default_model(hw).candidates("all_gather", s, group) for s in sizes}
    monkeypatch.setattr(nccl_plan, "share_at", lambda *a: 1.0)
    for size in sizes:
        full = default_model(hw).candidates("all_gather", size, group)
        moved = 0
        for a, b in zip(cut[size], full):
            assert a.label == b.label
            assert a.time_s + a.tuner_offset_s == pytest.approx(b.time_s + b.tuner_offset_s, rel=1e-12)
            if a.algorithm == "ring":
                share = channel_share("ring", a.protocol, size, 16, tuning()["pipeline"]["channels"])
                # NCCL's LL cap is on the total (busBw = min(llMaxBw, nc x bw x 0.5)), and so is its per-channel LL128
                # cap where priced (per_channel_caps: nChannels x perChMaxRingLL128Bw, the graph's channels)
                if a.protocol == "LL" or (a.protocol == "LL128" and default_model(hw).per_channel_caps):
                    assert b.terms.bandwidth_s * (1 - 1e-12) <= a.terms.bandwidth_s
                    assert a.terms.bandwidth_s <= b.terms.bandwidth_s / share * (1 + 1e-12)
                else:  # no cap on the total: the transfer / share
                    assert a.terms.bandwidth_s == pytest.approx(b.terms.bandwidth_s / share, rel=1e-12)
                moved += a.terms.bandwidth_s > b.terms.bandwidth_s
        # ring LL over 16 ranks is cut below 1 MiB, LL128 below 80 KiB, Simple below 512 KiB (16 channels); at 256 KiB
        # LL's 4 channels still reach the 2-node LL cap, so it does not move there
        assert moved == {64.0: 3, 2.0**12: 3, 2.0**16: 3, 2.0**18: 1, 2.0**22: 0}[size]


def test_docs_print_the_ramp_check(load_script):
    """scripts/ramp_channel_check.py: before / shipped / replaced per healthy log; docs/collectives-history.md prints exactly
    its block, and the shipped form has fewer misses than both others."""
    script = load_script("scripts/ramp_channel_check.py")
    found = script.errors()
    small = {v: sum(e[v].mape_small or 0 for e in found.values()) for v in script.VARIANTS}
    large = {v: sum(e[v].mape_large or 0 for e in found.values()) for v in script.VARIANTS}
    assert small["shipped"] < small["before"] - 0.5  # 385.8 -> 313.1 points below 1 MiB (main's vultr facts, gIB logs)
    assert large["shipped"] == pytest.approx(large["before"])  # no logged size >= 1 MiB moves
    assert large["replaced"] > large["shipped"] + 1.0  # the channel count does not carry the 1-256 MiB ramp
    doc = script.DOC.read_text(encoding="utf-8")
    block = doc.split(script.BEGIN)[1].split(script.END)[0].strip()
    assert block == script.render(found).strip(), "run: python scripts/ramp_channel_check.py --write"


# -- per-run channel knobs (nchannels round, session 7) ---------------------------------------------------------------
MAXCHANNELS = 64  # src/include/device.h, v2.28.9-1 and v2.30.7-1


def nccl_ctas(min_env=-1, max_env=-1):
    """parseCommConfig's defaults (minCTAs 1, maxCTAs MAXCHANNELS), then envConfigOverride as written in NCCL
    v2.28.9-1 src/init.cc (-1: the variable is not set; <= 0 values are ignored there and rejected by moesim)."""
    min_ctas, max_ctas = 1, MAXCHANNELS
    if min_env > 0:
        min_ctas = min_env
    if max_env > 0:
        max_ctas = max_env
    if min_ctas > MAXCHANNELS:
        min_ctas = MAXCHANNELS
    if max_ctas > MAXCHANNELS:
        max_ctas = MAXCHANNELS
    if min_ctas > max_ctas:
        min_ctas = max_ctas
    return min_ctas, max_ctas


def nccl_postset(n_channels, min_env=-2, max_env=-2, min_ctas_env=-1, max_ctas_env=-1):
    """ncclMinNchannels / ncclMaxNchannels and ncclTopoPostset's "Honor NCCL_MIN_NRINGS/NCCL_MAX_NRINGS" step as
    written in NCCL v2.28.9-1 src/graph/connect.cc (-2: the variable is not set), with the config's CTA bounds."""
    min_ctas, max_ctas = nccl_ctas(min_ctas_env, max_ctas_env)
    min_n = 0 if min_env == -2 else min_env
    min_n = MAXCHANNELS if min_n > MAXCHANNELS else min_n
    min_n = 0 if min_n < 0 else min_n
    max_n = MAXCHANNELS if max_env == -2 else max_env
    max_n = MAXCHANNELS if max_n > MAXCHANNELS else max_n
    max_n = 1 if max_n < 1 else max_n
    n_channels = min(min(max_n, n_channels), max_ctas)
    end = max(min_n, min_ctas)
    c = n_channels
    while c < end:  # copyChannels(comm, nChannels, end): duplicate channels up to `end`
        c += 1
    return c


def test_max_channels_is_ncclS():
    assert tuning()["channels"]["max_channels"] == MAXCHANNELS


@pytest.mark.parametrize("default", [8, 16, 24, 32])
def test_coll_channels_follow_ncclS_postset(default):
    from moesim.collectives.nccl_channels import coll_channels

    for min_env in (-2, 0, 1, 4, 16, 24, 32, 64, 100):
        for max_env in (-2, 1, 2, 4, 8, 16, 32, 64, 100):
            got = coll_channels(default, None if min_env == -2 else min_env, None if max_env == -2 else max_env)
            assert got == nccl_postset(default, min_env, max_env), (min_env, max_env)
    assert coll_channels(default) == default  # unset: the system's count
    for min_ctas in (-1, 1, 8, 32, 100):
        for max_ctas in (-1, 1, 4, 16, 24, 100):
            for min_env, max_env in ((-2, -2), (32, -2), (-2, 8), (4, 2)):
                got = coll_channels(default, *(None if v == -2 else v for v in (min_env, max_env)),
                                    *(None if v == -1 else v for v in (min_ctas, max_ctas)))
                assert got == nccl_postset(default, min_env, max_env, min_ctas, max_ctas), (min_ctas, max_ctas)


def test_nvls_channels_clamp():
    from moesim.collectives.nccl_channels import nvls_channels

    # comm->nvlsChannels = max(minCTAs, min(maxCTAs, NCCL_NVLS_NCHANNELS or the GPU's)) (v2.28.9-1 nvls.cc)
    assert nvls_channels(16) == 16 and nvls_channels(24, 8) == 8 and nvls_channels(16, 100) == MAXCHANNELS
    # with NCCL_MIN_CTAS / NCCL_MAX_CTAS: [minCTAs, maxCTAs], minCTAs lowered to maxCTAs
    assert nvls_channels(16, None, 32) == 32 and nvls_channels(24, None, None, 8) == 8 and nvls_channels(16, 8, 40, 20) == 20


@pytest.mark.parametrize("name,value", [("nccl_min_nchannels", -1), ("nccl_max_nchannels", 0),
                                        ("nccl_nvls_nchannels", 0), ("nccl_max_nchannels", 2.5),
                                        ("nccl_min_nchannels", True), ("nccl_max_nchannels", "8"),
                                        ("nccl_min_ctas", 0), ("nccl_max_ctas", -1)])
def test_bad_channel_knob_is_a_spec_error(name, value):
    from moesim.collectives.topo_model import TopologyModel
    from moesim.errors import SpecError

    with pytest.raises(SpecError, match=f"field '{name}'"):
        TopologyModel(load_hardware("h100-sxm"), **{name: value})


def _costs(model, op, group, sizes):
    return [(c.algorithm, c.time_s) for c in (model.cost(op, s, group) for s in sizes)]


SWEEP = [2.0**k for k in range(3, 31, 2)]


@pytest.mark.parametrize("op", ["all_reduce", "all_gather"])
def test_knobs_at_the_systems_count_change_nothing(op):
    """NCCL_MAX_NCHANNELS / NCCL_MIN_NCHANNELS equal to the system's count leave every price bit for bit."""
    from moesim.collectives.topo_model import TopologyModel

    hw, default = load_hardware("h100-sxm"), tuning()["pipeline"]["channels"]
    for group in (Group(size=8, devices=8), Group(size=16, devices=16)):
        plain = _costs(TopologyModel(hw), op, group, SWEEP)
        assert _costs(TopologyModel(hw, nccl_max_nchannels=default), op, group, SWEEP) == plain
        assert _costs(TopologyModel(hw, nccl_min_nchannels=default, nccl_max_nchannels=64), op, group, SWEEP) == plain
        assert _costs(TopologyModel(hw, nccl_min_ctas=1, nccl_max_ctas=64), op, group, SWEEP) == plain


def test_max_nchannels_is_wire_only_and_slows_every_size():
    """Fewer channels than the system's: NCCL's tuner still prices busBw with the search's graphs[a]->nChannels
    (tuning.cc), so the pick is unchanged (all-gather: no ring plateau); the wire runs min(nc, max) channels, so a
    ring Simple transfer at full size is default / max times the system's, times the several-node fill's ratio."""
    from moesim.collectives.nccl import fill_factor
    from moesim.collectives.topo_model import TopologyModel

    hw, group = load_hardware("h100-sxm"), Group(size=16, devices=16)
    plain, four = TopologyModel(hw), TopologyModel(hw, nccl_max_nchannels=4)
    a, b = _costs(plain, "all_gather", group, SWEEP), _costs(four, "all_gather", group, SWEEP)
    assert [x[0] for x in a] == [x[0] for x in b]
    # never faster beyond 0.5 %: at 128-256 KiB both run the same few channels (ring LL at NCCL's cap) and the
    # smaller several-node fill (4 x 4 MiB) takes 0.1-0.2 % off
    assert all(y[1] >= x[1] * 0.995 for x, y in zip(a, b)) and b[-1][1] > 2 * a[-1][1]
    size, step = 2.0**30, tuning()["pipeline"]
    ring = {m: next(c for c in m.candidates("all_gather", size, group) if c.label == "ring/Simple") for m in (plain, four)}
    fill = {m: k * step["inter_chunk_bytes"] * step["steps"] for m, k in ((plain, 16), (four, 4))}
    expected = ring[plain].terms.bandwidth_s * 16 / 4 * fill_factor(size, fill[four]) / fill_factor(size, fill[plain])
    assert ring[four].terms.bandwidth_s == pytest.approx(expected, rel=1e-12)
    # the offset gives NCCL's ranking back: time + offset as with every channel, up to the fill (in both)
    assert ring[four].time_s > ring[plain].time_s


def test_min_nchannels_above_the_default_keeps_the_wire_rate_and_grows_the_fill():
    """NCCL_MIN_NCHANNELS = 32 over 16: copyChannels duplicates rings on the same links, so the channel share stops
    at 1 (no size runs faster); below 16 x nt x threshold the loop cuts as before; the several-node S_fill is
    32 x 4 MiB (slower ramp) and the ring plateau's bytes / (channels x ranks) >= 64 moves up."""
    from moesim.collectives.nccl import _ring_plateau
    from moesim.collectives.nccl_channels import channel_rule, full_share_bytes, share_at
    from moesim.collectives.topo_model import TopologyModel

    rule = channel_rule("ring", "Simple", 16, 32, 16)
    assert full_share_bytes(rule) == 16 * 512 * 64
    assert [share_at(rule, s) for s in (2.0**19, 2.0**20, 2.0**30)] == [1.0, 1.0, 1.0]
    assert share_at(rule, 2.0**18) == share_at(channel_rule("ring", "Simple", 16, 16), 2.0**18) == 0.5
    assert full_share_bytes(channel_rule("ring", "Simple", 16, 8, 16)) == float("inf")
    hw, group = load_hardware("h100-sxm"), Group(size=16, devices=16)
    plain, more = TopologyModel(hw), TopologyModel(hw, nccl_min_nchannels=32)
    a, b = _costs(plain, "all_gather", group, SWEEP), _costs(more, "all_gather", group, SWEEP)
    assert all(y[1] >= x[1] for x, y in zip(a, b)) and b[-4][1] > a[-4][1]
    # 16 KiB over 16 ranks: 64 B per channel and rank on 16 channels (plateau), 32 B on 32 (none)
    assert _ring_plateau(1.0, 1.0, 64 * 16 * 16, 16, None) == (1.4, 1.4)
    assert _ring_plateau(1.0, 1.0, 64 * 16 * 16, 16, None, 32) == (1.0, 1.0)


def test_nvls_nchannels_reaches_the_nvls_fill():
    """NCCL_NVLS_NCHANNELS replaces the GPU's NVLS channel count (16 on Hopper) in the NVLS S_fill, n x nvlsChannels x
    128 KiB (nccl.nvls_fill_bytes); NCCL's NVLS bandwidth has no per-channel term (its busBw counts the NVLS graph's
    heads, tuning.cc), so nothing else moves; the algorithm stays NVLS and 16 prices bit for bit as unset."""
    from moesim.collectives.nccl import nvls_fill_bytes
    from moesim.collectives.topo_model import TopologyModel

    hw, group, size = load_hardware("h100-sxm"), Group(size=8, devices=8), 2.0**26
    tier0 = TopologyModel(hw).system(8).tiers[0]
    assert nvls_fill_bytes(8, tier0) == 8 * 16 * 128 * 1024
    assert nvls_fill_bytes(8, tier0, False, (8, None, None)) == 8 * 8 * 128 * 1024
    assert nvls_fill_bytes(8, tier0, False, (100, None, None)) == 8 * MAXCHANNELS * 128 * 1024  # MAXCHANNELS
    assert nvls_fill_bytes(8, tier0, False, (None, None, 4)) == 8 * 4 * 128 * 1024  # NCCL_MAX_CTAS
    plain, eight = (TopologyModel(hw, nccl_algo="nvls", nccl_nvls_nchannels=k) for k in (None, 8))
    a, b = plain.cost("all_reduce", size, group), eight.cost("all_reduce", size, group)
    assert a.algorithm == b.algorithm == "nvls/Simple" and b.time_s != a.time_s
    assert TopologyModel(hw, nccl_algo="nvls", nccl_nvls_nchannels=16).cost("all_reduce", size, group) == a


def test_cli_channel_knobs(capsys):
    import json

    from moesim.cli import main

    args = ["collective", "all_gather", "--hardware", "h100-sxm", "--devices", "16", "--bytes", "1GiB", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["nccl_max_nchannels"] is None and plain["nccl_channels"] == {"coll": 16, "nvls": 16}
    assert main(args + ["--nccl-max-nchannels", "4", "--nccl-min-nchannels", "100"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["nccl_max_nchannels"] == 4 and data["nccl_channels"]["coll"] == MAXCHANNELS  # max, then min
    assert main(args + ["--nccl-max-ctas", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["nccl_channels"] == {"coll": 8, "nvls": 8}
    assert main(args + ["--nccl-max-nchannels", "0"]) == 2
    err = capsys.readouterr().err
    assert "field '--nccl-max-nchannels'" in err and "Traceback" not in err and err.count("\n") == 1


def test_manifest_channel_knobs(tmp_path):
    from moesim.calibrate.nccl_table import entry_model, read_manifest
    from moesim.errors import SpecError

    hw = load_hardware("h200")
    model = entry_model({"file": "x.log", "nccl_min_nchannels": 32}, hw)
    assert model.nccl_min_nchannels == 32 and model.nccl_max_nchannels is None
    bad = tmp_path / "logs.toml"
    bad.write_text('schema_version = 1\n[[log]]\nfile = "x.log"\nhardware = "h200"\ncluster = "c"\nhealthy = true\n'
                   'shape = false\nnote = ""\nnccl_max_nchannels = -4\n', encoding="utf-8")
    with pytest.raises(SpecError, match="nccl_max_nchannels"):
        read_manifest(bad)


def test_published_channel_counts_read_strictly(tmp_path, load_script):
    """channel_counts.toml: every run has exactly its keys; the 8-GPU one-node counts of one profile agree (24 on
    A100 and H100 nodes, 32 on a DGX B200 node, 16 on H800; 16 across H100 nodes: the published INFO lines)."""
    from moesim.errors import SpecError

    script = load_script("scripts/channel_default_check.py")
    counts = script.published_counts(script.read_evidence())
    assert counts == {("a100-80gb", False): 24, ("h100-sxm", False): 24, ("h100-sxm", True): 16, ("h800", False): 16,
                      ("b200", False): 32}
    bad = tmp_path / "channel_counts.toml"
    bad.write_text('schema_version = 1\n[[run]]\ngpu = "x"\nprofile = ""\ngpus_per_node = 8\nnodes = 1\nnccl = ""\n'
                   'coll_channels = 24\nnvls_channels = -1\nsource = "s"\n', encoding="utf-8")  # no `shows`
    with pytest.raises(SpecError, match="keys must be exactly"):
        script.read_evidence(bad)


def test_docs_print_the_channel_default_check(load_script):
    """scripts/channel_default_check.py: the published per-system count, evaluated against every healthy log, moves
    nothing >= 1 MiB and was worse overall below 1 MiB on the logs the choice was made on (so 16 is kept);
    docs/collectives-history.md prints exactly its block."""
    script = load_script("scripts/channel_default_check.py")
    runs = script.read_evidence()
    counts = script.published_counts(runs)
    found = script.errors(counts)
    small = {v: sum(e[v].mape_small or 0 for e in found.values()) for v in ("shipped", "published")}
    large = {v: sum(e[v].mape_large or 0 for e in found.values()) for v in ("shipped", "published")}
    # session 11 (ramp): NCCL's per-channel LL128 / tree caps scale with the graph's channels, which the published
    # per-system count raises (32 -> 16 graph channels), so it now moves >= 1 MiB too (less capping: it sums lower)
    assert large["published"] < large["shipped"]
    # The verdict was drawn on the logs before session 10: there the published count is worse below 1 MiB (430.9 ->
    # 432.6 points over 41 healthy logs with session 10's broadcast model; 343.3 -> 345.1 before session 9), so 16 is
    # kept. --- newlogs2 (session 10): with the 6 healthy logs added that round, priced as they came, it sums 2.4
    # points less (545.0 -> 542.6 over 47), all of it from one of them (h100-together-1node-ring all_reduce, -g 8, ring
    # forced: 12.8 -> 8.6 %); whether
    # that reopens the choice is for the lead (docs/collectives-history.md, "Session 10 (newlogs2)"). Both orders held:
    session10 = {k for k in found if "together" in k or k.startswith("h800-nf5688m7")}
    earlier = {v: sum(e[v].mape_small or 0 for k, e in found.items() if k not in session10) for v in small}
    assert earlier["published"] > earlier["shipped"]
    assert small["published"] < small["shipped"]
    doc = script.DOC.read_text(encoding="utf-8")
    block = doc.split(script.BEGIN)[1].split(script.END)[0].strip()
    assert block == script.render(runs, counts, found).strip(), "run: python scripts/channel_default_check.py --write"


@pytest.mark.parametrize("channels,factor", [(4, 4.0), (8, 2.0), (16, 1.0), (32, 1.0)])
def test_tuner_rule_channels_on_the_wire(channels, factor):
    """A tuner rule's channel count replaces the picked ring's (NCCL: info->nMaxChannels = the plugin's, capped at
    comm->nChannels = 16 by the scheduler): at 64 MiB ring/Simple runs every channel by itself, so 4 channels move
    its transfer 4x; 32 is capped at 16; latency and base unchanged. At 1 KiB the scheduler's 16 KiB of traffic per
    channel leaves one channel, as NCCL's own loop does."""
    from moesim.collectives.nccl_tuner_rules import TunerRule, TunerRules
    from moesim.collectives.topo_model import TopologyModel

    hw, group = load_hardware("h200"), Group(size=16, devices=16)
    rules = TunerRules((TunerRule("all_gather", "ring", "Simple", channels=channels),))
    ruled, own = TopologyModel(hw, tuner_rules=rules), TopologyModel(hw)
    size = 2.0**26
    ring = next(c for c in own.candidates("all_gather", size, group) if c.label == "ring/Simple")
    got = ruled.cost("all_gather", size, group)
    assert got.algorithm == "ring/Simple"
    expected = ring.base_latency_s + ring.terms.latency_s + ring.terms.bandwidth_s * factor
    assert got.time_s == pytest.approx(expected, rel=1e-12)
    tiny = next(c for c in own.candidates("all_gather", 1024.0, group) if c.label == "ring/Simple")
    assert ruled.cost("all_gather", 1024.0, group).time_s == pytest.approx(tiny.time_s, rel=1e-12)


def test_pinned_share_follows_ncclS_scheduler():
    """min(plugin's channels, comm->nChannels, ceil(traffic / MinTrafficPerChannel)) channels (LL's cells 4x denser),
    the loop's threads: 16 KiB at NCCL 2.28.9, 32 KiB unset (v2.30.7-1's; session 17 versiongap)."""
    from moesim.collectives.nccl_channels import channel_rule, pinned_share
    from moesim.collectives.nccl_tuning import at_version

    with at_version("2.28.9"):
        rule = channel_rule("ring", "Simple", 16, 16)
        assert pinned_share(rule, 2.0**26, 4, 1, "Simple") == pytest.approx(4 / 16)
        assert pinned_share(rule, 2.0**26, 64, 1, "Simple") == 1.0
        # 48 KiB: the loop runs 1 channel of 512 threads; the plugin's 8 give 3 cells of 16 KiB (all-reduce traffic: 6)
        assert pinned_share(rule, 48 * 1024.0, 8, 1, "Simple") == pytest.approx(3 / 16)
        assert pinned_share(rule, 48 * 1024.0, 8, 2, "Simple") == pytest.approx(6 / 16)
        ll = channel_rule("tree", "LL", 16, 16)
        assert pinned_share(ll, 16 * 1024.0, 8, 2, "LL") == pytest.approx(8 / 16)  # 32 KiB / 4 KiB cells, capped 8
    # unset: 32 KiB cells, 8 KiB for LL
    assert pinned_share(rule, 48 * 1024.0, 8, 1, "Simple") == pytest.approx(2 / 16)
    assert pinned_share(rule, 48 * 1024.0, 8, 2, "Simple") == pytest.approx(3 / 16)
    assert pinned_share(ll, 16 * 1024.0, 8, 2, "LL") == pytest.approx(4 / 16)
