"""The ``predict`` memory benchmark's measuring child runs through the toolkit's task contract
(a :class:`~occam_l2r.data.base.BaseDataModule`) and writes every row in the dataset's order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_predict_memory_child_at_a_tiny_size(tmp_path):
    script = ROOT / "benchmarks" / "bench_predict_memory.py"
    for mode in ("streaming", "in_memory"):
        out = tmp_path / mode
        out.mkdir()
        proc = subprocess.run(
            [sys.executable, str(script), "--child", "300", mode, str(out)],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["n"] == result["rows"] == 300 and result["peak_mib"] > 0
