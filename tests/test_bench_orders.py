"""The orders benchmark runs as a person runs it (a subprocess, real simulator, daemon and client) and
prints one row for each executor asked, and none for the others. Its figures are not asserted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.processes import REPO

pytestmark = pytest.mark.timeout(240)

ROW = re.compile(r"^(direct|page|click)\s+(\d+)\s", re.MULTILINE)


def test_the_quick_bench_of_the_direct_executor_completes_with_its_row_only():
    done = subprocess.run([sys.executable, "bench/bench_orders.py", "--quick", "--executor", "direct"], cwd=REPO,
                          capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ROW.findall(done.stdout)
    assert rows == [("direct", "20")], done.stdout
    assert "load average" in done.stdout
