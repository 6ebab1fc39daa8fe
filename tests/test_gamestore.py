"""The game memory file: whatever instant a kill lands on, the next start resumes from the memory that
matches what subscribers saw, or from none at all, never from a wrong one."""

from __future__ import annotations

import logging

import pytest

from core.gamestore import FILE_SIZE, GameStore

BEFORE = {"game": "before the frame"}
AFTER = {"game": "after the frame"}


def store_with_two_frames(path):
    """The memory of one frame (events 1-2), then of the next (events 3-5)."""
    store = GameStore(path)
    store.save(BEFORE, 1, 2)
    before = path.read_bytes()
    store.save(AFTER, 3, 3)
    after = path.read_bytes()
    store.close()
    return before, after


def restored(path, last_published_seq):
    store = GameStore(path)
    try:
        return store.restore(last_published_seq, lambda memory: memory)
    finally:
        store.close()


def test_a_fresh_file_has_no_memory_and_says_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert restored(tmp_path / "games.state", 0) is None
    assert not caplog.records


def test_the_memory_of_the_last_frame_comes_back_once_its_events_were_published(tmp_path, caplog):
    path = tmp_path / "games.state"
    store_with_two_frames(path)
    with caplog.at_level(logging.WARNING):
        assert restored(path, 5) == AFTER
        assert restored(path, 9) == AFTER  # later events (sys.start, connection.status) change no game
    assert not caplog.records


def test_a_kill_at_any_byte_of_a_write_resumes_from_the_frame_before(tmp_path, caplog):
    """The write comes before its frame's events go out: a torn write means none of them was published."""
    path = tmp_path / "games.state"
    before, after = store_with_two_frames(path)
    changed = [index for index in range(FILE_SIZE) if before[index] != after[index]]
    assert changed
    for cut in range(len(changed)):
        torn = bytearray(before)
        for index in changed[:cut]:
            torn[index] = after[index]
        path.write_bytes(bytes(torn))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert restored(path, 2) == BEFORE, f"write torn after {cut} of {len(changed)} bytes"
        assert len(caplog.records) <= 1


def test_a_kill_after_a_write_and_before_its_events_resumes_from_the_frame_before(tmp_path, caplog):
    path = tmp_path / "games.state"
    store_with_two_frames(path)
    with caplog.at_level(logging.WARNING):
        assert restored(path, 2) == BEFORE
    assert not caplog.records, "exact: nothing to say"


def test_a_kill_between_a_frames_events_resumes_from_before_that_frame_and_says_so(tmp_path, caplog):
    path = tmp_path / "games.state"
    store_with_two_frames(path)
    with caplog.at_level(logging.WARNING):
        assert restored(path, 4) == BEFORE
    (line,) = caplog.records
    assert "seq 4 of 3-5" in line.getMessage()
    with caplog.at_level(logging.WARNING):
        assert restored(path, 6) == BEFORE, "the verdict stands: the frame's memory is never taken later"


def test_a_memory_ahead_of_the_sequence_file_is_set_aside_for_good(tmp_path, caplog):
    path = tmp_path / "games.state"
    store_with_two_frames(path)
    with caplog.at_level(logging.WARNING):
        assert restored(path, 0) is None  # the sequence file was reset: this memory is of other events
    (line,) = caplog.records
    assert "ahead of the sequence file" in line.getMessage()
    assert restored(path, 100) is None


@pytest.mark.parametrize("damage", [lambda data: bytes(reversed(data)), lambda data: data[:100], lambda data: b"\xff" * 5])
def test_a_damaged_file_gives_one_line_and_no_memory(tmp_path, caplog, damage):
    path = tmp_path / "games.state"
    _, after = store_with_two_frames(path)
    path.write_bytes(damage(after))
    with caplog.at_level(logging.WARNING):
        assert restored(path, 5) is None
    (line,) = caplog.records
    assert "unreadable" in line.getMessage() and str(path) in line.getMessage()
    store = GameStore(path)
    store.save(AFTER, 6, 1)
    store.close()
    assert restored(path, 6) == AFTER, "the file is usable again"


def test_a_memory_that_cannot_be_kept_is_recorded_as_none(tmp_path, caplog):
    path = tmp_path / "games.state"
    store = GameStore(path)
    store.save(BEFORE, 1, 2)
    with caplog.at_level(logging.WARNING):
        store.save({"game": "x" * 10_000}, 3, 2)
        store.save({"game": "\ud800"}, 5, 2)
    store.close()
    assert len(caplog.records) == 1
    assert restored(path, 6) is None, "never the older memory: it no longer matches what was published"


def test_a_memory_the_normalizer_refuses_gives_one_line_and_is_set_aside(tmp_path, caplog):
    path = tmp_path / "games.state"
    store_with_two_frames(path)

    def refuse(memory):
        raise ValueError("not a game memory of version 1")

    store = GameStore(path)
    with caplog.at_level(logging.WARNING):
        assert store.restore(5, refuse) is None
    store.close()
    (line,) = caplog.records
    assert "not usable (not a game memory of version 1)" in line.getMessage()
    assert restored(path, 5) is None
