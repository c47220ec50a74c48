"""``benchmarks/bench_gpu.py`` at a tiny size on the CPU (issue 21, item 5): every code path of the
GPU throughput benchmark (ClassifierTask vs a bare timm loop, SAM / SAM 2 / GroundingDINO
images/s, the ``segment`` verb batched vs one image at a time) runs and reports its numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_gpu_tiny_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    results = _bench().run(["--tiny", "--workdir", str(tmp_path / "work"), "--json", str(out),
                            "--rounds", "1"])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["device"] == "CPU" and results["tiny"] is True
    train = results["train"]
    assert train["task"] > 0 and train["bare"] > 0
    assert train["ratio"] == pytest.approx(train["task"] / train["bare"])
    assert set(results["models"]) == {"sam_tiny", "sam2_tiny", "gdino_tiny"}
    assert all(v > 0 for v in results["models"].values())
    seg = results["segment"]
    assert seg["batched"] > 0 and seg["single"] > 0
    printed = capsys.readouterr().out
    for needle in ("ClassifierTask", "bare timm loop", "sam2_tiny", "segment end to end"):
        assert needle in printed
