"""How the runs were launched, as their job scripts state it (moesim/calibrate/launch_facts.py; docs/collectives-history.md,
"Session 14 (g8)"): the manifest's launch facts read strictly, the Engaging entries carry what
mit-orcd/orcd-benchmarks @bca7147f states (one process per node driving 8 GPUs, no binding flag), and no entry claims
the cores a process ran on where its source does not print them."""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.calibrate.launch_facts import BIND_TO_VALUES, LaunchFacts, launch_facts
from moesim.calibrate.nccl_table import read_manifest
from moesim.errors import SpecError

MANIFEST = Path(__file__).resolve().parent.parent / "data" / "nccl" / "logs.toml"
ENTRY = ('[[log]]\nfile = "x_all_reduce_perf.log"\nhardware = "h100-sxm"\ncluster = "c"\nhealthy = true\n'
         'shape = false\nnote = "n"\n')


def _entries(prefix: str) -> list[dict]:
    return [e for e in read_manifest(MANIFEST) if e["file"].startswith(prefix)]


def test_engaging_entries_state_one_process_per_node_and_no_binding_flag():
    for prefix, count in (("b200-engaging-2node_", 6), ("b200-engaging-2node-b_", 6), ("b200-engaging-1node", 6)):
        entries = _entries(prefix)
        assert len(entries) == count
        for entry in entries:
            facts = launch_facts(entry)
            # job-nccl-2node.sh "#SBATCH --ntasks-per-node=1"; run-nccl-1node.sh "mpirun -np 1"
            assert facts == LaunchFacts(processes_per_node=1, bind_to="default", cores_per_process=None), entry["file"]
            assert entry["gpus_per_thread"] == 8  # "-g $GPUS_PER_TASK" / "-g $NGPUS" with 8: one process drives 8 GPUs
            # the launcher's default binding is documented, not printed by the run: no cores may be assumed
            assert facts.stated_cores() is None


def test_no_entry_states_cores_without_a_stated_binding():
    for entry in read_manifest(MANIFEST):
        facts = launch_facts(entry)
        if facts.cores_per_process is not None:
            assert facts.bind_to not in (None, "default", "none"), entry["file"]


def test_newlogs6_g8_entries_state_one_process_per_node_and_no_binding_flag():
    """Session 15 (newlogs6): the Ubuntu Engaging pair (run-nccl-2node.sh: HOSTLIST "$NODE_A:1,$NODE_B:1",
    "mpirun -np $NTASKS -H") and the Lambda / MGHPCC DGX H100 pairs (hostfiles "slots=1", "mpirun ... -n 2"), each
    -g 8 with no binding flag (logs.toml cites each)."""
    for prefix, count in (("b200-engaging-ubuntu-2node_", 6), ("h100-lambda-2node-g8_", 1),
                          ("h100-mghpcc-dgx-2node-g8_", 1)):
        entries = _entries(prefix)
        assert len(entries) == count
        for entry in entries:
            assert launch_facts(entry) == LaunchFacts(processes_per_node=1, bind_to="default"), entry["file"]
            assert entry["gpus_per_thread"] == 8 and launch_facts(entry).stated_cores() is None


def test_newlogs8_entries_state_one_process_per_gpu_and_no_binding():
    """Session 18 (newlogs8): dstack's Lambda B200 and Crusoe A100 tasks ("-n $DSTACK_GPUS_NUM -N
    $DSTACK_GPUS_PER_NODE --bind-to none" on two nodes of 8 GPUs, -g 1; logs.toml cites each)."""
    for prefix in ("b200-lambda-2node_", "a100-crusoe-2node_"):
        entries = _entries(prefix)
        assert len(entries) == 1
        facts = launch_facts(entries[0])
        assert facts == LaunchFacts(processes_per_node=8, bind_to="none"), prefix
        assert "gpus_per_thread" not in entries[0] and facts.stated_cores() is None


def test_newlogs10_entry_states_one_process_per_gpu_bound_to_numa():
    """Session 20 (newlogs10): the Azure H200 note's mpirun line ("-np 8 --bind-to numa --map-by ppr:8:node", -g 1,
    one host; logs.toml cites it)."""
    (entry,) = _entries("h200-azhpc-1node_")
    facts = launch_facts(entry)
    assert facts == LaunchFacts(processes_per_node=8, bind_to="numa")
    assert "gpus_per_thread" not in entry and facts.stated_cores() is None


def test_newlogs11_entries_state_one_process_per_gpu():
    """Session 21 (newlogs11): the README's host pair ("-np 16 ... -H ip:8,ip:8", no --bind-to) and SkyPilot's Together
    AI task ("-np $NP -N $SKYPILOT_NUM_GPUS_PER_NODE --bind-to none", two nodes of 8 H100); logs.toml cites each."""
    for prefix, bind_to in (("h100-hostpair-2node_", "default"), ("h100-together-sky-2node_", "none")):
        (entry,) = _entries(prefix)
        facts = launch_facts(entry)
        assert facts == LaunchFacts(processes_per_node=8, bind_to=bind_to), prefix
        assert "gpus_per_thread" not in entry and facts.stated_cores() is None


def test_newlogs12_entries_state_one_process_per_gpu_under_srun():
    """Session 22 (newlogs12): the OKE GB300 job's sbatch ("--nodes=4 --ntasks-per-node=4", `srun --mpi=pmix`, as the
    source's demo guide prints it) and the Snellius job file ("--ntasks-per-node=4", `srun -n 8 -N 2`), neither naming
    a binding flag, -g 1; logs.toml cites each."""
    for prefix in ("gb300-oke-4node_", "h100-snellius-2node_"):
        (entry,) = _entries(prefix)
        facts = launch_facts(entry)
        assert facts == LaunchFacts(processes_per_node=4, bind_to="default"), prefix
        assert "gpus_per_thread" not in entry and facts.stated_cores() is None


def test_newlogs13_entry_states_one_process_per_gpu_unbound():
    """Session 23 (newlogs13): the Crusoe H100 post's script ("mpirun -np 16 -N 8 -hostfile hostfile --bind-to none",
    -g 1, two nodes of 8 H100); logs.toml cites it."""
    (entry,) = _entries("h100-crusoe-2node_")
    facts = launch_facts(entry)
    assert facts == LaunchFacts(processes_per_node=8, bind_to="none")
    assert "gpus_per_thread" not in entry and facts.stated_cores() is None


def test_newlogs15_entries_state_one_process_per_gpu():
    """Session 25 (newlogs15): wutz/k8s-in-action's job file at ffd459e ("mpirun -np 16 -bind-to none ... -g 1", two
    workers of 8 slots) and the k8s README's rank lines (ranks 0-7 on worker-0, 8-15 on worker-1); logs.toml cites each.
    The k8s README prints no launcher command, so no binding is stated for it."""
    (wutz,) = _entries("h100-wutz-2node_")
    assert launch_facts(wutz) == LaunchFacts(processes_per_node=8, bind_to="none")
    (k8s,) = _entries("h100-k8s-2node_")
    assert launch_facts(k8s) == LaunchFacts(processes_per_node=8)
    assert all("gpus_per_thread" not in e and launch_facts(e).stated_cores() is None for e in (wutz, k8s))


def test_entries_without_launch_facts_read_as_not_stated():
    stated = ("b200-engaging-", "h100-lambda-2node-g8_", "h100-mghpcc-dgx-2node-g8_", "b200-lambda-2node_",
              "a100-crusoe-2node_", "h200-azhpc-1node_", "h100-hostpair-2node_", "h100-together-sky-2node_",
              "gb300-oke-4node_", "h100-snellius-2node_", "h100-crusoe-2node_", "h100-wutz-2node_", "h100-k8s-2node_")
    plain = [e for e in read_manifest(MANIFEST) if not e["file"].startswith(stated)]
    assert plain and all(launch_facts(e) == LaunchFacts() for e in plain)


def _manifest(tmp_path, extra: str) -> Path:
    path = tmp_path / "logs.toml"
    path.write_text("schema_version = 1\n\n" + ENTRY + extra, encoding="utf-8")
    return path


def test_good_launch_facts_read(tmp_path):
    entry = read_manifest(_manifest(tmp_path, 'processes_per_node = 8\nbind_to = "core"\ncores_per_process = 2\n'))[0]
    assert launch_facts(entry) == LaunchFacts(8, "core", 2)
    assert launch_facts(entry).stated_cores() == 2


@pytest.mark.parametrize("extra, fragments", [
    ('bind_to = "cores"\n', ("field 'bind_to'", "bind_to 'cores' is not allowed", "allowed: " + ", ".join(BIND_TO_VALUES))),
    ("processes_per_node = 0\n", ("field 'processes_per_node'", "integer >= 1")),
    ("processes_per_node = true\n", ("field 'processes_per_node'", "integer >= 1")),
    ('cores_per_process = "1"\n', ("field 'cores_per_process'", "integer >= 1")),
    ("cores_per_process = 1\n", ("field 'cores_per_process'", "needs the binding the source states")),
    ('bind_to = "default"\ncores_per_process = 1\n', ("field 'cores_per_process'", "allowed: hwthread")),
])
def test_bad_launch_facts_are_one_line_naming_the_entry_and_field(tmp_path, extra, fragments):
    with pytest.raises(SpecError) as err:
        read_manifest(_manifest(tmp_path, extra))
    text = str(err.value)
    assert "log 1 (x_all_reduce_perf.log)" in text and "\n" not in text
    for fragment in fragments:
        assert fragment in text, text
