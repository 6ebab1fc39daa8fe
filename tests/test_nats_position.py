"""Finding a Vectra `seq` in the JetStream stream without reading it all (core/contracts/nats.py)."""

from __future__ import annotations

import pytest

from core.contracts.nats import stream_position


def stream(seqs: dict[int, int]):
    """A stream as position → `Vectra-Seq`; the reads are counted."""
    reads: list[int] = []

    async def seq_at(position: int) -> int | None:
        reads.append(position)
        return seqs.get(position)

    return seq_at, reads


async def test_a_seq_after_a_restart_skip_is_found_in_a_few_reads_not_a_scan():
    # positions 1..100_000; a restart skipped 10_000 numbers halfway
    seqs = {position: position if position <= 50_000 else position + 10_000 for position in range(1, 100_001)}
    seq_at, reads = stream(seqs)
    assert await stream_position(1, 100_000, seq_at, 50_001) == 50_001, "a number the restart skipped: the next held"
    assert len(reads) <= 18
    seq_at, _ = stream(seqs)
    assert await stream_position(1, 100_000, seq_at, 60_005) == 50_005


@pytest.mark.parametrize("wanted, position", [(1, 10), (42, 42), (200, None)])
async def test_before_the_oldest_held_at_the_first_and_past_the_newest(wanted, position):
    seq_at, _ = stream({position: position for position in range(10, 101)})
    assert await stream_position(10, 100, seq_at, wanted) == position


@pytest.mark.parametrize("wanted", [1, 2, 299, 300, 301, 998, 999, 1000])
async def test_deleted_messages_do_not_derail_the_search(wanted):
    seqs = {position: position for position in range(1, 1001) if position % 3}
    seq_at, _ = stream(seqs)
    start = await stream_position(1, 1000, seq_at, wanted)
    assert all(seq < wanted for position, seq in seqs.items() if position < start)
    assert all(seq >= wanted for position, seq in seqs.items() if position >= start)
