"""Session 16 (newlogs7): Together's run1 2-node file was printed with NCCL_DEBUG=INFO; the kept log is its sweep's
nccl-tests lines with the INFO lines cut (tests/data/nccl/SOURCES.md, "Session 16 (newlogs7)"). The reader skips whole
INFO lines, so the file as the source printed it reads to the same rows: the INFO lines below are the source's own
(run1/nccl-sendrecv-2node-79912.out @280e4df2), put back where it printed them."""

from pathlib import Path

from moesim.calibrate.nccl_tests import read_nccl_tests, read_nccl_version

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"
KEPT = DATA / "b200-together-2node-r1_sendrecv_perf.log"

# After the 16 rank lines (the first INFO lines of the block, with NCCL's banner).
AFTER_RANKS = """\
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO ENV/Plugin: Could not find: libnccl-env.so
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO NCCL_SOCKET_IFNAME set by environment to bond0
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO Bootstrap: Using bond0:7.247.232.121<0>
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO cudaDriverVersion 12090
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO NCCL version 2.29.7+cuda12.9
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO NCCL git version stable b81d6a5a3
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO ncclCommInitRank comm 0x63519a90af80 rank 0 nranks 16 cudaDev 0 nvmlDev 0 busId 17000 commId 0xc6ce07d9ddce9cbb - Init COMPLETE
"""
# Between the column titles and the first row.
AFTER_TITLES = """\
use3a-ss-b200-gpu-149:98983:98983 [1] NCCL INFO ncclCommInitRank comm 0x5d63a7a8fad0 rank 1 nranks 16 cudaDev 1 nvmlDev 1 busId 3d000 commId 0xc6ce07d9ddce9cbb - Init COMPLETE
use3a-ss-b200-gpu-150:98204:98556 [0] NCCL INFO [Proxy Progress] Device 0 CPU core 5
use3a-ss-b200-gpu-150:98204:98204 [0] NCCL INFO Channel 08/1 : 7[7] -> 8[0] [receive] via NET/NCCL RDMA Plugin v8/0/GDRDMA/Shared
use3a-ss-b200-gpu-149:98982:98982 [0] NCCL INFO Channel 03/1 : 0[0] -> 1[1] via P2P/CUMEM
"""
# Between the last row and the footer.
BEFORE_FOOTER = """\
use3a-ss-b200-gpu-149:98985:98985 [3] NCCL INFO comm 0x5cadd1c4ff20 rank 3 nranks 16 cudaDev 3 busId 70000 - Destroy COMPLETE
use3a-ss-b200-gpu-149:98985:98985 [3] NCCL INFO Unloading plugin libnccl-net.so
"""


def _as_printed() -> bytes:
    lines = KEPT.read_text().splitlines(keepends=True)
    last_rank = max(i for i, line in enumerate(lines) if line.startswith("#  Rank"))
    titles_end = next(i for i, line in enumerate(lines) if line.startswith("#        (B)")) + 1
    footer = next(i for i, line in enumerate(lines) if line.startswith("# Out of bounds"))
    out = (lines[:last_rank + 1] + [AFTER_RANKS] + lines[last_rank + 1:titles_end] + [AFTER_TITLES]
           + lines[titles_end:footer] + [BEFORE_FOOTER] + lines[footer:])
    return "".join(out).encode()


def test_the_kept_file_has_no_info_line_and_the_whole_sweep():
    text = KEPT.read_text()
    assert "NCCL INFO" not in text
    points = read_nccl_tests(KEPT).collectives
    assert [p.size_bytes for p in points if p.variant == "out_of_place"] == [1024 << k for k in range(19)]


def test_the_file_as_printed_reads_to_the_same_rows(tmp_path):
    printed = tmp_path / KEPT.name
    printed.write_bytes(_as_printed())
    assert b"NCCL INFO" in printed.read_bytes()
    kept, read = read_nccl_tests(KEPT), read_nccl_tests(printed)
    def rows(m):  # every field but the "file:line" source, which the put-back lines shift
        return [(p.op, p.size_bytes, p.group_size, p.time_s, p.variant) for p in m.collectives]
    assert rows(read) == rows(kept) and len(rows(kept)) == 38 and {p.group_size for p in kept.collectives} == {16}
    assert read.skipped == kept.skipped == ()
    # the release logs.toml states for the kept file is the one the INFO banner prints
    assert read_nccl_version(printed) == "2.29.7" and read_nccl_version(KEPT) == ""
