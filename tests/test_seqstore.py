"""The sequence counter: never reused, continued after a restart, honest about numbers it skipped."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from core.seqstore import SeqStore
from tests.processes import REPO, VECTRA


def publish(store: SeqStore) -> int:
    seq = store.next()
    store.published(seq)
    return seq


def test_clean_restart_continues_exactly(tmp_path):
    store = SeqStore(tmp_path / "seq.state", block=100)
    assert [publish(store) for _ in range(5)] == [1, 2, 3, 4, 5]
    store.close()
    again = SeqStore(tmp_path / "seq.state", block=100)
    assert again.resume.previous_last_seq == 5 and again.resume.skipped is None
    assert again.next() == 6


def test_sigkill_never_reuses_a_number_and_names_the_skipped_ones(tmp_path):
    path = tmp_path / "seq.state"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from core.seqstore import SeqStore
        store = SeqStore(Path({str(path)!r}), block=100)
        for _ in range(130):
            store.published(store.next())
        store.next()  # handed out, then killed before the event was kept anywhere
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert result.returncode == -9
    store = SeqStore(path, block=100)
    assert store.resume.previous_last_seq == 130, "the number handed out but never kept was not published"
    assert store.resume.skipped == (131, 200)
    assert store.next() == 201


def test_a_kill_before_the_recorder_kept_an_event_leaves_its_number_unused_not_lost(tmp_path):
    """The bus counts an event as published only once its keeper (the recorder's live log) has it:
    a kill in between must not make the next run's replay report a one-event `gap`."""
    path = tmp_path / "seq.state"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from core.bus import EventBus
        from core.ring import Ring
        from core.seqstore import SeqStore

        class DiesOnTheFiftieth:
            def deliver(self, envelope):
                if envelope.seq == 50:
                    os.kill(os.getpid(), signal.SIGKILL)

        bus = EventBus(SeqStore(Path({str(path)!r}), block=100), Ring(1000, 1 << 20))
        bus.keep_with(DiesOnTheFiftieth())
        for _ in range(60):
            bus.publish("game.tick", {{}}, source="test")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=30)
    assert result.returncode == -9
    store = SeqStore(path, block=100)
    assert store.resume.previous_last_seq == 49
    assert store.resume.skipped == (50, 100)


def fill(folder: Path) -> None:
    """Write into `folder` until its file system has no byte left."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_a_full_disk_at_first_start_is_one_clear_line_and_exit_2(tiny_disk, vectra_env):
    fill(tiny_disk)
    data_dir = tiny_disk / "data"
    env = {**os.environ, **vectra_env, "VECTRA_DATA_DIR": str(data_dir), "VECTRA_FEED_URL": "http://127.0.0.1:9"}
    done = subprocess.run([*VECTRA, "--daemon"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(data_dir / "seq.state") in lines[0] and "No space left" in lines[0]
