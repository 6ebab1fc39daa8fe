"""The sequence counter: never reused, continued after a restart, honest about numbers it skipped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from core.seqstore import SeqStore


def test_clean_restart_continues_exactly(tmp_path):
    store = SeqStore(tmp_path / "seq.state", block=100)
    assert [store.next() for _ in range(5)] == [1, 2, 3, 4, 5]
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
            store.next()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert result.returncode == -9
    store = SeqStore(path, block=100)
    assert store.resume.previous_last_seq == 130
    assert store.resume.skipped == (131, 200)
    assert store.next() == 201
