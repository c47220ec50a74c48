"""benchmarks/bench_shared.py runs at a tiny size and counts the parameters it promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def test_bench_shared_tiny(capsys):
    path = Path(__file__).parents[1] / "benchmarks" / "bench_shared.py"
    spec = importlib.util.spec_from_file_location("bench_shared", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--size", "32", "--batch", "2", "--repeats", "1"])
    assert out["shared"] > 0 and out["separate"] > 0
    assert out["params"] == pytest.approx(0.5, abs=0.01)  # one backbone instead of two
    assert "ratio shared / separate" in capsys.readouterr().out
