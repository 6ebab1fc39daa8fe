"""The orders benchmark runs as a person runs it (a subprocess, real simulator, daemon and client) and
prints one row for each executor asked, and none for the others. Its figures are not asserted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.processes import REPO
from tests.test_chrome import CHROMIUM, NODE_CLIENT

pytestmark = pytest.mark.timeout(240)

ROW = re.compile(r"^(direct|page|click)\s+(\d+)\s", re.MULTILINE)


def test_the_quick_bench_of_the_direct_executor_completes_with_its_row_only():
    done = subprocess.run([sys.executable, "bench/bench_orders.py", "--quick", "--executor", "direct"], cwd=REPO,
                          capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ROW.findall(done.stdout)
    assert rows == [("direct", "20")], done.stdout
    assert "load average" in done.stdout


@pytest.mark.chromium
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package (/usr/bin/chromium)")
@pytest.mark.skipif(not NODE_CLIENT.exists(), reason="needs the page's npm packages: run `npm ci` at the repo root")
def test_the_page_floor_bench_times_every_order_through_a_bare_devtools_client():
    done = subprocess.run([sys.executable, "bench/bench_page_floor.py", "--orders", "5"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 timed orders" in done.stdout, done.stdout
    for label in ("evaluate -> ack read", "simulator wire -> ack", "browser adds", "Chrome stamp -> read"):
        assert re.search(rf"^{re.escape(label)}\s+\d+\.\d\d\s+\d+\.\d\d$", done.stdout, re.MULTILINE), done.stdout
    assert "the browser alone adds" in done.stdout
