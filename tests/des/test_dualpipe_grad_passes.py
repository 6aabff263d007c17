"""A DualPipe device runs two pieces (stage s forward, p − 1 − s for the other direction); each piece's gradients are
final after its last weight-gradient pass (B, W or the B of an F&B pair), where its buckets flush
(moesim.des.schedule.grad_passes_per_piece). The F&B slot's overlapped backward is `pair` = (kind, mb, vs): reading
its micro-batch as the piece (main before session 20) undercounted each piece and counted micro-batches as pieces."""

from moesim.des.orders import device_order
from moesim.des.schedule import grad_passes_per_piece


def test_rank_1_of_4_by_hand():
    """DualPipe, pp 4, 8 micro-batches, rank 1 (its slots below): piece 1 runs micro-batches 0-3, piece 2 runs 4-7;
    piece 1's passes are FB(B 0), FB(B 1), B 2, W 3 and piece 2's B 4, FB(B 5), B 6, W 7 (the I's are not weight
    passes): 4 each."""
    slots = device_order("dualpipe", 8, 4, 1, 1)
    assert [(s.kind, s.mb, s.vs, s.pair) for s in slots] == [
        ("F", 0, 1, None), ("F", 4, 2, None), ("F", 1, 1, None), ("F", 5, 2, None), ("F", 2, 1, None),
        ("B", 4, 2, None), ("FB", 6, 2, ("B", 0, 1)), ("FB", 3, 1, ("B", 5, 2)), ("FB", 7, 2, ("B", 1, 1)),
        ("B", 6, 2, None), ("B", 2, 1, None), ("I", 7, 2, None), ("I", 3, 1, None), ("W", 7, 2, None),
        ("W", 3, 1, None)]
    assert grad_passes_per_piece(slots) == {2: 4, 1: 4}


def test_every_rank_holds_two_pieces_of_m_over_2_passes():
    for pp, m in ((4, 8), (4, 16), (8, 16)):
        for rank in range(pp):
            passes = grad_passes_per_piece(device_order("dualpipe", m, pp, 1, rank))
            assert passes == {rank: m // 2, pp - 1 - rank: m // 2}


def test_one_directional_schedules_count_one_piece():
    assert grad_passes_per_piece(device_order("1f1b", 8, 4, 1, 2)) == {2: 8}
    assert grad_passes_per_piece(device_order("zb-h1", 8, 4, 1, 0)) == {0: 8}
