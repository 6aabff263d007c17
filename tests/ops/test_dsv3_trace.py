"""scripts/dsv3_trace.py: DeepSeek's H800 training trace (deepseek-ai/profile-data train.json) read kernel by kernel,
grouped into moesim's operators, and its table in docs/operators.md."""

from __future__ import annotations

import pytest


def _trace():
    """A chrome trace of three kernels as the PyTorch profiler writes them: two phases' annotations, the CPU
    launches (cuda_runtime, correlation ids) inside them, the kernels on two streams."""
    ann = lambda name, ts, dur: {"ph": "X", "cat": "user_annotation", "name": name, "ts": ts, "dur": dur}  # noqa: E731
    launch = lambda corr, ts: {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": ts,  # noqa: E731
                               "dur": 3, "args": {"correlation": corr}}
    kern = lambda corr, tid, ts, dur, name, grid: {"ph": "X", "cat": "kernel", "name": name, "tid": tid,  # noqa: E731
                                                   "ts": ts, "dur": dur,
                                                   "args": {"correlation": corr, "grid": grid}}
    return {"traceEvents": [
        ann("1F1B", 0, 1000), ann("attn(F)", 10, 100), ann("dispatch(F)", 120, 50), ann("attn(F)", 300, 100),
        launch(7, 20), launch(8, 130), launch(9, 310),
        kern(7, 7, 500, 40, "void flash::compute_attn_ws<Flash_fwd_kernel_traits<192, 128>>(int)", [32, 128, 1]),
        kern(8, 27, 520, 90, "void dpsk::ep::internode::dispatch<false, 8, false, 8>(int4*)", [20, 1, 1]),
        kern(9, 7, 600, 45, "void flash::compute_attn_ws<Flash_fwd_kernel_traits<192, 128>>(int)", [32, 128, 1]),
    ]}


def test_extract_names_each_kernel_by_its_launching_phase_and_occurrence(dsv3):
    ks = {k.order: k for k in dsv3.extract_kernels(_trace())}
    assert (ks[7].phase, ks[7].layer, ks[9].phase, ks[9].layer) == ("attn(F)", 0, "attn(F)", 1)
    assert (ks[8].phase, ks[8].stream, ks[8].kernel) == ("dispatch(F)", 27, "dpsk::ep::internode::dispatch")
    assert [ks[i].start_us for i in (7, 8, 9)] == [0, 20, 100]  # from the first kernel's start
    assert [ks[i].dur_us for i in (7, 8, 9)] == [40, 90, 45]
    assert ks[7].kernel == "flash::compute_attn_ws" and ks[7].grid == "32,128,1"
    # the first attention kernel ran 20 of its 40 us beside the DeepEP kernel, the second 10 of 45
    assert dsv3.overlapped_us(list(ks.values())) == {7: 20, 9: 10}
    assert dsv3.span_us(list(ks.values())) == (145, 145)


def test_record_round_trip_and_bad_header(dsv3, tmp_path):
    ks = dsv3.extract_kernels(_trace())
    path = tmp_path / "k.csv"
    dsv3.write_record(ks, path)
    assert dsv3.read_record(path) == ks
    path.write_text("phase,layer\nattn(F),0\n")
    with pytest.raises(dsv3.TraceError, match="k.csv: header must be phase,layer,stream"):
        dsv3.read_record(path)


def test_short_names_of_the_traces_kernel_families(dsv3):
    assert dsv3.short_name("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel>"
                           "(dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel::Params)") == \
        "dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel"
    assert dsv3.short_name("void layer_norm::ln_fwd_kernel<layer_norm::Kernel_traits<__nv_bfloat16, 7168u>>(int)") == \
        "layer_norm::ln_fwd_kernel"


def test_committed_record_every_kernel_grouped(dsv3, kernels):
    """The record holds the trace's 983 GPU kernels / copies / sets, each launched inside a phase, and the rules
    of scripts/dsv3_trace.toml give every one an operator."""
    assert len(kernels) == 983
    assigned = dsv3.assign(kernels, dsv3.load_rules())
    assert [k.kernel for k, op, _ in assigned if op == "unmatched"] == []
    assert {k.phase for k in kernels} == {"attn(F)", "attn(B)", "attn(W)", "mlp(F)", "mlp(B)", "mlp(W)",
                                          "dispatch(F)", "dispatch(B)", "combine(F)", "combine(B)"}
    assert {k.layer for k in kernels} == {0, 1, 2, 3}


def test_grouping_picks_the_gemms_by_shape_as_the_grids_show(dsv3, kernels):
    """Each operator the rules name gets kernels of one grid: the routed experts' GEMMs are DeepGEMM's m-grouped
    kernel (112 CTAs, one per SM left beside DeepEP's 20), one per layer and pass; the weight gradients one kernel
    per expert; MLA's attention the FlashAttention kernels, one forward per layer."""
    assigned = dsv3.assign(kernels, dsv3.load_rules())
    by = {}
    for k, op, pas in assigned:
        by.setdefault((op, pas), []).append(k)
    for key in (("expert_fc1", "fwd"), ("expert_fc2", "fwd"), ("expert_fc1", "dgrad"), ("expert_fc2", "dgrad")):
        assert {(k.kernel.split("::")[-2], k.grid) for k in by[key]} == {("m_grouped_fp8_ptp128c", "1,112,1")}
        assert len(by[key]) == 4
    assert len(by[("expert_fc1", "wgrad")]) == len(by[("expert_fc2", "wgrad")]) == 16  # 4 experts x 4 layers
    assert {k.stream for k in by[("expert_fc1", "wgrad")]} == {7, 23}  # two streams at once
    assert [k.dur_us for k in by[("attention_core", "fwd")]] == [1248, 1199, 1280, 1221]
    assert {k.kernel for k in by[("attention_core", "bwd")]} == {
        "flash::FlashAttnBwd", "flash::FlashAttnBwdPreprocess", "flash::FlashAttnBwdPostprocessConvertdQ"}
    assert all(k.kernel.startswith("sm90_xmma_gemm_bf16f32") for k in by[("router", "fwd")])  # BF16 in, FP32 out
    assert {k.stream for key, ks in by.items() if key[0].startswith("ep_") for k in ks} == {27}


def test_shapes_the_trace_implies_match_the_scenario(dsv3, kernels):
    """4096 tokens per micro-batch (one 4096-token sequence: scenarios/deepseek-v3-h800.toml's 15360 sequences over
    128 data-parallel ranks and 120 micro-batches), 4 experts per device (256 / EP64), and routed rows near
    4096 x 8 = 32768 per layer (balanced over the batch, not exactly per micro-batch)."""
    shapes = dsv3.trace_shapes(kernels)
    assert shapes["tokens_per_micro_batch"] == [4096] * 4
    assert shapes["experts_per_device"] == [4] * 4
    rows = shapes["routed_rows_per_device"]
    assert len(rows) == 4 and all(0.9 < r / 32768 < 1.15 for r in rows)


def test_docs_table_is_the_scripts_output(dsv3, kernels, doc_block):
    assert doc_block("dsv3_trace", "docs/operators.md") == dsv3.render(kernels)


def test_h800_attention_points_are_the_traces_kernels(dsv3, kernels):
    """The H800 tables read off the trace are what `dsv3_trace.py --points` computes from
    the committed record (status measured, the trace cited), and pricing the trace's shape with them gives back the
    measured time: the forward kernels' mean 1237.0 us, the backward's (three kernels) 4254.25 us."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.price import op_time_s
    from moesim.specs.hardware_file import load_hardware
    from moesim.specs.load import load_scenario

    hw = load_hardware("h800")
    shipped = [t for t in hw.efficiency.op_tables if "deepseek-ai/profile-data" in t.source]
    computed = dsv3.import_points(kernels) + dsv3.import_wgrad_points(kernels)
    assert [(t.kind, t.dtype, t.pass_, t.op, t.status, t.source, t.measured_on) for t in shipped] == [
        (c["kind"], c["dtype"], c["pass"], c["op"], c["status"], c["source"], c["measured_on"]) for c in computed]
    assert [[list(p) for p in t.points] for t in shipped] == [c["points"] for c in computed]
    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    core = {op.pass_: float(op_time_s(op, hw)[0]) for op in terms.ops_fwd + terms.ops_bwd if op.kind == "attention"}
    assert core["fwd"] == pytest.approx(1237.0e-6, rel=1e-3)  # 4-digit efficiency: within 0.1 %
    assert core["bwd"] == pytest.approx(4254.25e-6, rel=1e-3)


def test_h800_gating_points_price_the_traces_gate(dsv3, kernels):
    """The router's gating on H800 is priced from the trace's own kernels (session 19, dsv3gap): at the trace's
    shape the forward takes the 39 small kernels' mean 267.0 us per layer and the backward the 37 of the gate
    (160.0 us); the token x hidden elementwise kernels of the same phase (the residual gradients) are not the
    gate's. The router GEMM is BF16, as the trace's cuBLAS kernels are."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.price import op_time_s
    from moesim.specs.load import load_scenario

    assigned = dsv3.assign(kernels, dsv3.load_rules())
    residual = [k for k, op, pas in assigned if op == "residual_grad"]
    assert residual and all(int(k.grid.split(",")[0]) >= 16384 for k in residual)
    # session 20 (gradadds): three [4096, 7168] adds a layer (57344 blocks of 512 elements, autograd's gradient sums);
    # the [4096, 128, 64] copy (65536 blocks) between the Q / K copies and the rotary kernels is rope_and_copies'
    # (its recomputed forward: session 22, dsv3ops)
    assert len(residual) == 4 * 3 and {k.grid.split(",")[0] for k in residual} == {"57344"}
    rope_copy = [k for k, op, pas in assigned
                 if (op, pas) == ("rope_and_copies", "recompute") and k.grid.startswith("65536,")]
    assert len(rope_copy) == 4
    gate_bwd = [k for k, op, pas in assigned if (op, pas) == ("router_gating", "bwd")]
    assert max(int(k.grid.split(",")[0]) for k in gate_bwd if k.grid) < 16384
    assert (len(gate_bwd), sum(k.dur_us for k in gate_bwd)) == (4 * 37, 4 * 160)
    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    assert moe.model.moe.router_dtype == "bfloat16"
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    gating = {op.pass_: float(op_time_s(op, moe.hardware)[0]) for op in terms.ops_fwd + terms.ops_bwd
              if op.name == "router_gating"}
    assert gating["fwd"] == pytest.approx(267.0e-6, rel=1e-3)
    assert gating["bwd"] == pytest.approx(160.0e-6, rel=1e-3)
    router = [op for op in terms.ops_fwd + terms.ops_bwd if op.name == "router"]
    assert {op.dtype for op in router} == {"bfloat16"} and len(router) == 3


def test_scenario_router_dtype_must_be_a_dtype(dsv3, tmp_path):
    """A scenario's [moe] router_dtype is one of the spec's dtypes; a wrong one names the field and the choices."""
    from moesim.errors import SpecError
    from moesim.specs.load import load_scenario

    bad = tmp_path / "s.toml"
    bad.write_text(dsv3.SCENARIO.read_text().replace('router_dtype = "bfloat16"', 'router_dtype = "bf16"'))
    with pytest.raises(SpecError, match="router_dtype") as err:
        load_scenario(str(bad))
    assert "bfloat16" in str(err.value)


def test_h800_wgrad_points_price_the_traces_weight_gradients(dsv3, kernels):
    """Session 21 (dsv3rest): every FP8 weight-gradient GEMM of a DeepSeek-V3 MoE layer on H800 reads the wgrad
    tables fitted on the trace, not the forward table: priced on the SM share DeepEP leaves (112 of 132), each takes
    the operator's measured span per layer (the routed experts' kernels ran on two streams at once: span, not sum),
    within the tables' 4 significant digits; so do the dense dgrad GEMMs on their own table (session 22, dsv3ops),
    while the routed experts' grouped dgrad still reads DeepGEMM's README table (pass "any" since session 24,
    dsv3fwd, when the forward got a table of its own; before, the FP8 fallback to the forward). The kernels the
    rules group as wgrad are all DeepSeek's fp8_dptp128c_acc, 4 per routed-expert GEMM (one per local expert)."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.price import op_efficiency, op_time_s
    from moesim.ops.sm_share import overlapped_compute_share, shared_time_s
    from moesim.ops.tables import select_table
    from moesim.specs.load import load_scenario

    assigned = dsv3.assign(kernels, dsv3.load_rules())
    wgrad = [(k, op) for k, op, pas in assigned if pas == "wgrad" and op != "router"]
    assert {k.kernel for k, _ in wgrad} == {"dpsk::grouped_gemm::cuda::fp8_dptp128c_acc::GemmKernel"}
    assert sum(op == "expert_fc1" for _, op in wgrad) == sum(op == "expert_fc2" for _, op in wgrad) == 4 * 4
    spans = dsv3._merged(assigned, lambda ks: dsv3.span_us(ks)[1])
    sums = dsv3._merged(assigned, lambda ks: sum(k.dur_us for k in ks))
    assert spans[("expert_fc1", "wgrad")] < 0.8 * sums[("expert_fc1", "wgrad")]  # two streams at once
    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    hw = moe.hardware
    share = overlapped_compute_share(hw, moe.training)
    assert share == pytest.approx(112 / 132)
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    names = {n for ns in dsv3.WGRAD_IMPORTED.values() for n in ns}
    # + the forward's 9, and the router's BF16 GEMM in its three passes (session 25, mlacasts)
    assert len(names) == 10 and sum(len(ns) for ns in dsv3.WGRAD_IMPORTED.values()) == 28
    for op in terms.ops_bwd:
        if op.name not in names:
            continue
        table = select_table(hw.efficiency.op_tables, op.kind, op.dtype, op.pass_, (op.name,))
        if op.kind == "grouped_gemm" and op.pass_ == "dgrad":
            # no grouped dgrad table of its pass: DeepGEMM's README table (pass "any") at the dgrad shape
            assert table.pass_ == "any" and "DeepGEMM README" in table.source
            continue
        # the wgrad GEMMs and (session 22, dsv3ops) the dense dgrad GEMMs read their own pass's measured table
        assert op.pass_ in ("wgrad", "dgrad") and table.pass_ == op.pass_ and table.status == "measured"
        t = shared_time_s(op.kind, float(op_time_s(op, hw)[0]), float(op.kernels) * hw.efficiency.kernel_launch_s,
                          share)
        assert t == pytest.approx(spans[(op.name, op.pass_)] * 1e-6, rel=1e-3), op.name
        assert (0.3 < float(op_efficiency(op, hw)[0]) < 0.46) if op.pass_ == "wgrad" else \
            (0.33 < float(op_efficiency(op, hw)[0]) < 0.63)


def test_h800_fwd_points_price_the_traces_forward_gemms(dsv3, kernels):
    """Session 24 (dsv3fwd): the forward FP8 GEMMs of a DeepSeek-V3 MoE layer on H800 read tables fitted on the trace as
    the wgrad / dgrad ones are, not DeepGEMM's README tables (DeepGEMM's later kernel, which the trace's ran at
    0.95-1.22x, 1.10-1.14x but the down-projections: dsv3casts (c)): each kernel the rules group as one of these 9
    forward operators is DeepSeek's fp8_ptp128c (m_grouped for the routed experts), one a layer; priced on the SM share
    DeepEP leaves, each takes the operator's measured span within 0.1 %; their sum is the 5014.5 - 46.5 (BF16 router) us
    a layer dsv3casts measured. The recomputed up-projections read the same table (their forward price); the routed
    experts' grouped dgrad keeps DeepGEMM's README table."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.price import op_efficiency, op_time_s
    from moesim.ops.sm_share import overlapped_compute_share, shared_time_s
    from moesim.ops.tables import select_table
    from moesim.specs.load import load_scenario

    names = dsv3.WGRAD_IMPORTED[("gemm", "float8", "fwd", "any")] + \
        dsv3.WGRAD_IMPORTED[("grouped_gemm", "float8", "fwd", "any")]
    assigned = dsv3.assign(kernels, dsv3.load_rules())
    fwd = [(k, op) for k, op, pas in assigned if pas == "fwd" and op in names]
    assert {k.kernel.split("::")[-2] for k, _ in fwd} == {"fp8_ptp128c", "m_grouped_fp8_ptp128c"}
    assert len(fwd) == 9 * 4  # one kernel an operator a layer
    spans = dsv3._merged(assigned, lambda ks: dsv3.span_us(ks)[1])
    assert sum(spans[(n, "fwd")] for n in names) == pytest.approx(5014.5 - 46.5, abs=0.01)
    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    hw = moe.hardware
    share = overlapped_compute_share(hw, moe.training)
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    priced = set()
    for op in terms.ops_fwd:
        if op.name not in names or op.pass_ != "fwd":
            continue
        table = select_table(hw.efficiency.op_tables, op.kind, op.dtype, op.pass_, (op.name,))
        assert table.pass_ == "fwd" and table.status == "measured" and "profile-data" in table.source, op.name
        t = shared_time_s(op.kind, float(op_time_s(op, hw)[0]), float(op.kernels) * hw.efficiency.kernel_launch_s,
                          share)
        assert t == pytest.approx(spans[(op.name, "fwd")] * 1e-6, rel=1e-3), op.name
        assert 0.34 < float(op_efficiency(op, hw)[0]) < 0.64
        priced.add(op.name)
    assert priced == set(names)
    # DeepGEMM's README tables stay, pass "any": read where no pass has a table of its own (the grouped dgrad)
    readme = [t for t in hw.efficiency.op_tables if "DeepGEMM README" in t.source]
    assert {(t.kind, t.pass_) for t in readme} == {("gemm", "any"), ("grouped_gemm", "any")}
    (g_dgrad,) = [o for o in terms.ops_bwd if o.name == "expert_fc1" and o.pass_ == "dgrad"]
    assert select_table(hw.efficiency.op_tables, g_dgrad.kind, "float8", "dgrad", (g_dgrad.name,)) in readme


def test_h800_router_points_price_the_traces_bf16_router_gemm(dsv3, kernels):
    """Session 25 (mlacasts): the router's BF16 GEMM is one cuBLAS kernel a pass (tile 128x128x64); the forward's
    grid 32 x 2 is the 64 output tiles of [4096, 256], one wave on 64 of the 132 SMs, so it runs at 0.42 of the BF16
    peak where the FLOP-keyed prior gave 0.573 (30.5 us a pass against 46.5 / 40.5 / 47.2 measured: dsv3fwd left it).
    Each pass now reads a table of its own (op "router"), and priced on the SM share each takes its measured span."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.price import op_efficiency, op_time_s
    from moesim.ops.sm_share import overlapped_compute_share, shared_time_s
    from moesim.ops.tables import select_table
    from moesim.specs.load import load_scenario

    assigned = dsv3.assign(kernels, dsv3.load_rules())
    router = [(k, pas) for k, op, pas in assigned if op == "router"]
    assert len(router) == 3 * 4 and all(k.kernel.startswith("sm90_xmma_gemm_bf16") for k, _ in router)
    assert all("tilesize128x128x64" in k.kernel for k, _ in router)
    fwd_grids = {k.grid for k, pas in router if pas == "fwd"}
    assert fwd_grids == {"32,2,1"} and (4096 // 128) * (256 // 128) == 64  # one tile a CTA, one wave
    assert {k.grid for k, pas in router if pas != "fwd"} == {"28,4,1", "112,1,1"}  # 112 CTAs: DeepEP's 20 SMs left
    spans = dsv3._merged(assigned, lambda ks: dsv3.span_us(ks)[1])
    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    hw = moe.hardware
    share = overlapped_compute_share(hw, moe.training)
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    ops = {op.pass_: op for op in terms.ops_fwd + terms.ops_bwd if op.name == "router"}
    assert set(ops) == {"fwd", "dgrad", "wgrad"}
    prior = hw.efficiency.matmul.at_array(float(ops["fwd"].flops[0]))
    assert prior == pytest.approx(0.573, abs=1e-3)
    for pas, op in ops.items():
        table = select_table(hw.efficiency.op_tables, op.kind, op.dtype, pas, (op.name,))
        assert (table.dtype, table.op, table.status) == ("bfloat16", "router", "measured"), pas
        t = shared_time_s(op.kind, float(op_time_s(op, hw)[0]), float(op.kernels) * hw.efficiency.kernel_launch_s,
                          share)
        assert t == pytest.approx(spans[("router", pas)] * 1e-6, rel=1e-3), pas
        assert 0.4 < float(op_efficiency(op, hw)[0]) < prior  # slower than the prior in every pass
    # no other operator reads them: the other H800 GEMMs are FP8 and name no "router" table
    assert select_table(hw.efficiency.op_tables, "gemm", "bfloat16", "fwd", ("out_proj",)) is None


def test_h800_e5m6_points_price_the_traces_casts(dsv3, kernels):
    """Session 21 (dsv3rest): the attention output's E5M6 cast and its cast back (DeepSeek-V3 §3.3.4) read their own
    H800 tables, one kernel each in the trace: at the trace's shape they take the kernels' mean 185.5 / 140.5 us a
    layer; the SwiGLU input's FP8 store and dequantisation keep the profile's default bandwidth fraction (no table of
    theirs; the other FP8 casts have their own since session 22, test_h800_fp8_cast_points_price_the_traces_casts)."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.price import op_efficiency, op_time_s
    from moesim.specs.load import load_scenario

    assigned = dsv3.assign(kernels, dsv3.load_rules())
    for name, kernel in (("attention_output_cast", "per_token_cast_to_fp8_with_fp8_special_fmt"),
                         ("attention_output_dequantise", "per_token_cast_back_special_fmt_impl")):
        ks = [k for k, op, _ in assigned if op == name]
        assert len(ks) == 4 and all(kernel in k.kernel for k in ks)
    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    ops = {op.name: op for op in terms.ops_fwd + terms.ops_bwd}
    hw = moe.hardware
    assert float(op_time_s(ops["attention_output_cast"], hw)[0]) == pytest.approx(185.5e-6, rel=1e-3)
    assert float(op_time_s(ops["attention_output_dequantise"], hw)[0]) == pytest.approx(140.5e-6, rel=1e-3)
    assert op_efficiency(ops["moe_activation_dequantise"], hw) == hw.efficiency.memory_bandwidth
    assert op_efficiency(ops["moe_activation_quantise"], hw) == hw.efficiency.memory_bandwidth


def test_mlas_rope_runs_recomputed_then_backward(dsv3, kernels):
    """attn(B) runs MLA's RoPE and copies twice (session 22, dsv3ops): the forward's four kernels again (rotary on
    k_pe, the K copy, k_pe expanded over the heads, rotary on q), launched after the recomputed up-projections and
    before the attention core's backward (DeepSeek-V3 §3.2.3); then their backward after it (two rotary kernels
    and two copies). The backward takes what the forward does, as moesim's operator assumes (bwd_bytes_factor 1);
    the recomputed ones are the selective recomputation's."""
    assigned = sorted(dsv3.assign(kernels, dsv3.load_rules()), key=lambda x: x[0].order)
    for layer in range(4):
        ks = [(k, op, pas) for k, op, pas in assigned if k.phase == "attn(B)" and k.layer == layer]
        at = {(op, pas): [i for i, (_, o, p) in enumerate(ks) if (o, p) == (op, pas)]
              for op, pas in {(o, p) for _, o, p in ks}}
        redo, back = at[("rope_and_copies", "recompute")], at[("rope_and_copies", "bwd")]
        core = at[("attention_core", "bwd")]
        assert [ks[i][0].kernel.split("::")[-1] for i in redo] == [
            "rotary_kernel", "_copy_tensor_kernel", "elementwise_kernel", "rotary_kernel"]
        assert sorted(ks[i][0].kernel.split("::")[-1] for i in back) == [
            "_copy_tensor_kernel", "_copy_tensor_kernel", "rotary_kernel", "rotary_kernel"]
        assert max(at[("kv_up_proj", "recompute")]) < min(redo) and max(redo) < min(core) < max(core) < min(back)
    rows = {(r[0], r[1]): r for r in dsv3.table_rows(kernels)}
    redo_us, back_us, fwd_us = (rows[("rope_and_copies", p)][2] for p in ("recompute", "bwd", "fwd"))
    assert redo_us == pytest.approx(306.5) and back_us == pytest.approx(314.75)
    assert abs(back_us / fwd_us - 1) < 0.06 and abs(redo_us / fwd_us - 1) < 0.1
    assert rows[("rope_and_copies", "bwd")][4] == pytest.approx(rows[("rope_and_copies", "fwd")][4])


def test_dualpipe_order_by_hand_and_the_traces_waits_on_deepep(dsv3, kernels):
    """chained_pair_us (session 22, dsv3ops): one layer by hand, a slow combine(B) holding the backward's MLP and
    through it everything after; on the trace, the phases in DualPipe's order wait on DeepEP ~2.1 ms (the last
    layer's), and not at all with DeepEP at moesim's price per call: there max(compute, collectives) is exact."""
    one = {(p, 0): 1.0 for p in dsv3.PAIR_COMPUTE + dsv3.PAIR_COMM}
    one[("combine(B)", 0)] = 5.0
    # combine(B) 0-5 | attn(F) 0-1, mlp(B) 5-6, mlp(W) 6-7; dispatch(F) 5-6, dispatch(B) 6-7; mlp(F) 7-8,
    # attn(B) 8-9, attn(W) 9-10; combine(F) 8-9
    assert dsv3.chained_pair_us(one, layers=1) == 10.0
    assert dsv3.chained_pair_us({k: (0.0 if k[0] in dsv3.PAIR_COMM else v) for k, v in one.items()}, layers=1) == 6.0
    phases = dsv3.phase_us(kernels)
    compute = sum(v for k, v in phases.items() if k[0] in dsv3.PAIR_COMPUTE)
    wall, _ = dsv3.span_us(kernels)
    _, busy = dsv3.span_us([k for k in kernels if k.stream != dsv3.COMM_STREAM])
    assert compute == busy == 124286
    measured = dsv3.chained_pair_us(phases)
    assert compute + 2000 < measured < wall - 2000  # 2123 us of waits; 2603 us between kernels
    last = {k: v for k, v in phases.items() if k[1] < 3}  # three layers: their waits are small
    three = dsv3.chained_pair_us(last, layers=3)
    assert three - sum(v for k, v in last.items() if k[0] in dsv3.PAIR_COMPUTE) < 400
    at_price = dsv3.deepep_at_price(phases, dsv3.priced_us())
    assert {k[0] for k, v in at_price.items() if v != phases[k]} == set(dsv3.PAIR_COMM)
    assert dsv3.chained_pair_us(at_price) == compute


def test_h800_fp8_cast_points_price_the_traces_casts(dsv3, kernels):
    """Session 22 (dsv3ops): DeepSeek-V3's FP8 casts are the tensors the trace casts, and their H800 tables price the
    trace's cast kernels back. Forward: the layer input cast twice (q_down and kv_down are two Linears: two
    per_token casts of [t, h] in attn(F)), the up-projections' and out_proj's inputs, the MoE input once per token
    before the dispatch (read by the routed and the shared experts: no cast of its own before shared_fc1), fc2's
    inputs. Backward: every output gradient twice but fc2's routed one, cast 1x128 on the tokens before the
    combine's backward (on DeepEP's stream: left out of the fit with its bytes) and 128x1 on the rows, and the
    shared fc2's 128x1 only; every input re-quantised transposed."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.price import op_time_s
    from moesim.precision import quantise_cost
    from moesim.specs.load import load_scenario

    assigned = dsv3.assign(kernels, dsv3.load_rules())
    for layer in range(4):
        phase = lambda name: [k for k, _, _ in sorted(assigned, key=lambda x: x[0].order)  # noqa: E731
                              if (k.phase, k.layer) == (name, layer)]
        fwd_casts = [k for k in phase("attn(F)") if k.kernel.endswith("per_token_cast_to_fp8_with_channels")]
        assert len(fwd_casts) == 6 and {k.grid for k in fwd_casts} == {"4096,1,1"}  # 5 Linears and the dispatch's
        mlp = phase("mlp(F)")
        first_gemm = next(i for i, k in enumerate(mlp) if "fp8_ptp128c" in k.kernel)
        assert not any("cast" in k.kernel for k in mlp[:first_gemm])  # shared_fc1 reads the dispatch's copy
        assert sum(k.grid == "56,32,1" for k in phase("attn(B)") if "per_channel_cast" in k.kernel) == 3
        assert [k.grid for k in phase("combine(B)") if "cast" in k.kernel] == ["4096,1,1"]
    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    m, att = moe.model, moe.model.attention
    t, h, f, s = 4096, m.d_model, m.moe.expert_d_ff, float(terms.slots[0])
    f_s = m.moe.num_shared_experts * m.moe.shared_expert_d_ff
    heads, d_qk, d_v = att.num_heads, att.head_dim + att.qk_rope_head_dim, att.v_head_dim
    grads = att.q_lora_rank + att.kv_lora_rank + att.qk_rope_head_dim + heads * d_qk + heads * (att.head_dim + d_v) + h
    inputs = 2 * h + att.q_lora_rank + att.kv_lora_rank + heads * d_v
    per = quantise_cost(1.0, "blockwise", 2.0, copies=1).bytes_moved  # read 2, write 1 + 4/128
    up = att.q_lora_rank + att.kv_lora_rank  # the up-projections' inputs: their own operator (session 24, dsv3casts)
    fwd = {"attention": t * (inputs - up), "permute": t * h + s * f, "shared_experts": t * f_s}
    bwd = {"attention": t * (2 * grads + inputs),
           "permute": 2 * s * 2 * f + (t * h + s * h) + (s * h + s * f),
           "shared_experts": 2 * t * 2 * f_s + t * h + (t * h + t * f_s)}
    ops = {(o.pass_, o.part): o for o in terms.ops_fwd + terms.ops_bwd if o.name == "fp8_quantise"}
    for pas, by_part in (("fwd", fwd), ("bwd", bwd)):
        assert {p: float(ops[(pas, p)].bytes[0]) for p in by_part} == pytest.approx(
            {p: n * per for p, n in by_part.items()}, rel=1e-12)
    up_op = next(o for o in terms.ops_fwd if o.name == "up_proj_quantise")
    assert float(up_op.bytes[0]) == pytest.approx(t * up * per, rel=1e-12) and up_op.kernels == 4
    hw = moe.hardware
    priced = {pas: sum(float(op_time_s(o, hw)[0]) for (q, _), o in ops.items() if q == pas) for pas in ("fwd", "bwd")}
    rows = {(r[0], r[1]): r[2] for r in dsv3.table_rows(kernels)}
    fwd_rows = rows[("fp8_quantise", "fwd")] + rows[("up_proj_quantise", "fwd")]  # 306.5 + 30.5 us
    assert priced["fwd"] + float(op_time_s(up_op, hw)[0]) == pytest.approx(fwd_rows * 1e-6, rel=1e-3)
    computing = sum(k.dur_us for k, op, pas in assigned
                    if op == "fp8_quantise" and pas == "bwd" and k.stream != dsv3.COMM_STREAM) / 4
    eta = next(tb for tb in hw.efficiency.op_tables if tb.op == "fp8_quantise" and tb.pass_ == "bwd").points[0][-1]
    beside = dsv3.comm_side_cast_bytes(moe, t) / (hw.chip.hbm_bw_bytes_per_s * eta)
    assert computing == 2285.25 and priced["bwd"] - beside == pytest.approx(computing * 1e-6, rel=1e-3)


def test_each_dgrad_gemm_follows_its_weights_transpose(dsv3, kernels):
    """Each dense FP8 Dgrad GEMM of the trace follows the batched_transpose of its own weight (grid = the weight's
    128x128 blocks, moesim's Dgrad shape (m, n, k): ceil(n / 128) x ceil(k / 128)): the grouping names the GEMM
    the shape its weight has (session 22, dsv3ops: q_up's and kv_up's were the other way round before)."""
    import math

    import numpy as np

    from moesim.ops.breakdown import term_builder
    from moesim.specs.load import load_scenario

    moe = load_scenario(str(dsv3.SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    blocks = {o.name: math.ceil(float(np.ravel(o.shape[1])[0]) / 128) * math.ceil(float(np.ravel(o.shape[2])[0]) / 128)
              for o in terms.ops_bwd if o.pass_ == "dgrad" and o.kind == "gemm" and o.name != "router"}
    assert blocks["q_up_proj"] == 2304 and blocks["kv_up_proj"] == 1024 and blocks["kv_down_proj"] == 280
    seen = []
    for k, op, pas in sorted(dsv3.assign(kernels, dsv3.load_rules()), key=lambda x: x[0].order):
        if k.kernel.endswith("batched_transpose"):
            last = int(k.grid.split(",")[0])
        elif pas == "dgrad" and op in blocks:
            assert last == blocks[op], (k.layer, op)
            seen.append(op)
    assert len(seen) == 4 * len(blocks) == 4 * 7
