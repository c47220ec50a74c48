"""ImageNet-scale fusion (issue 21, item 2): float16 logits files (format 3) and their version
check, logits mapped from the file and passes in row blocks giving the same fusion as in
memory (every method), the threshold / alpha / temperature searches unchanged, and the
ImageNet-size benchmark's code path at a tiny size."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from occam_l2r import logits as logits_mod
from occam_l2r.cli import main
from occam_l2r.errors import EXIT_USER_ERROR
from occam_l2r.fusion import calibration, methods
from occam_l2r.fusion.fusers import REGISTRY, Calibration, FitSettings, HeadConfig, build_method
from occam_l2r.fusion.inputs import align_pair, load_run_split
from occam_l2r.fusion.synthetic import write_synthetic_runs
from occam_l2r.logits import LogitsFile, LogitsFileError, write_streamed

ROOT = Path(__file__).resolve().parents[1]


def _meta_version(path: Path) -> int:
    with np.load(path) as z:
        return json.loads(str(z["meta"]))["format_version"]


def _file(n: int = 7, c: int = 4) -> LogitsFile:
    rng = np.random.default_rng(0)
    return LogitsFile(ids=np.array([f"s{i}" for i in range(n)]), labels=np.arange(n) % c,
                      logits=rng.standard_normal((n, c)).astype(np.float32), split="val",
                      view="FULL", run="r", class_names=list("abcd")[:c])  # fmt: skip


def test_float16_round_trip_format_3_and_float32_stays_format_2(tmp_path):
    lf = _file()
    f32 = lf.save(tmp_path / "f32.npz")
    f16 = lf.save(tmp_path / "f16.npz", dtype=np.float16)
    assert _meta_version(f32) == 2 and _meta_version(f16) == 3
    for mmap in (False, True):
        a, b = LogitsFile.load(f32, mmap=mmap), LogitsFile.load(f16, mmap=mmap)
        assert a.logits.dtype == np.float32 and b.logits.dtype == np.float16
        np.testing.assert_array_equal(a.logits, lf.logits)
        np.testing.assert_array_equal(b.logits, lf.logits.astype(np.float16))
        assert list(b.ids) == list(lf.ids) and b.labels.tolist() == lf.labels.tolist()
    mapped = LogitsFile.load(f16, mmap=True).logits
    assert isinstance(mapped.base, np.memmap) or isinstance(mapped, np.memmap)
    # saving a float16 file again keeps it float16 (format 3)
    assert _meta_version(LogitsFile.load(f16).save(tmp_path / "again.npz")) == 3


def test_streamed_writer_float16_and_row_count(tmp_path):
    lf = _file(10)

    def chunks(name):
        arr = getattr(lf, name)
        yield from (arr[:3], arr[3:])

    path = write_streamed(tmp_path / "s.npz", 10, 4, (3, 1), chunks, "val", "FULL", "r",
                          lf.class_names, {}, np.float16)  # fmt: skip
    back = LogitsFile.load(path, mmap=True)
    assert _meta_version(path) == 3 and back.logits.dtype == np.float16
    np.testing.assert_array_equal(back.logits, lf.logits.astype(np.float16))
    with pytest.raises(ValueError, match="9 rows of ids written, 10 expected"):
        write_streamed(tmp_path / "bad.npz", 10, 4, (3, 1), lambda name: [getattr(lf, name)[:9]],
                       "val", "FULL", "r", [], {})  # fmt: skip
    assert not (tmp_path / "bad.npz").exists()


def test_newer_format_refused_by_fuse_with_one_message(tmp_path, monkeypatch, capsys):
    runs = write_synthetic_runs(tmp_path / "runs", num_classes=3, seeds=1,
                                sizes={"val": 20, "test": 20}, dtype=np.float16)  # fmt: skip
    path = Path(runs["FG_C"][0]) / "logits" / "val.npz"
    lf = LogitsFile.load(path)
    monkeypatch.setattr(logits_mod, "format_version", lambda dtype: 4)  # a file from the future
    lf.save(path)
    monkeypatch.undo()
    cfg = {"runs": runs, "output_dir": str(tmp_path / "out"), "methods": ["max_conf"]}
    (tmp_path / "fuse.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "fuse", "--config", str(tmp_path / "fuse.yaml")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"{path}: logits format 4" in err and "(1, 2, 3)" in err and "predict" in err
    assert err.startswith("occam_l2r fuse: error: ") and "Traceback" not in err
    with pytest.raises(LogitsFileError, match="logits format 4"):
        LogitsFile.load(path)


def _tiny_blocks(n, width, block_bytes=0, itemsize=8):
    return [slice(lo, min(lo + 7, n)) for lo in range(0, n, 7)]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_mapped_and_chunked_fusion_equals_in_memory(tmp_path, monkeypatch, dtype):
    """Every registered method gives the same fit and predictions on logits mapped from the file
    and read in blocks of 7 rows as on the same logits in memory."""
    runs = write_synthetic_runs(tmp_path / "runs", num_classes=5, seeds=1, dtype=dtype,
                                sizes={"train": 120, "val": 90, "test": 60})  # fmt: skip
    settings = FitSettings("macro_acc", 0, HeadConfig(max_epochs=2, batch_size=32))

    def fused(mmap: bool) -> dict:
        pairs = {s: align_pair(load_run_split(runs["FG_C"][0], s, mmap=mmap),
                               load_run_split(runs["FULL"][0], s, mmap=mmap))
                 for s in ("train", "val", "test")}  # fmt: skip
        calib = Calibration(pairs["val"])
        out = {}
        for name in REGISTRY:
            m = build_method(name, settings).fit(pairs["train"], pairs["val"], calib)
            out[name] = (m.params(), [m.apply(pairs[s]) for s in ("val", "test")])
        return out

    ref = fused(False)
    for mod in (methods, calibration, sys.modules["occam_l2r.fusion.inputs"]):
        monkeypatch.setattr(mod, "row_blocks", _tiny_blocks)
    got = fused(True)
    for name, (params, outs) in ref.items():
        p2, outs2 = got[name]
        assert p2.keys() == params.keys(), name
        for k, v in params.items():
            np.testing.assert_allclose(np.asarray(p2[k], float), np.asarray(v, float),
                                       rtol=1e-9, atol=1e-12, err_msg=f"{name} {k}")  # fmt: skip
        for a, b in zip(outs, outs2, strict=True):
            np.testing.assert_array_equal(a.pred, b.pred, err_msg=name)
            np.testing.assert_allclose(a.conf, b.conf, rtol=1e-12, atol=1e-12, err_msg=name)


def test_align_pair_shares_the_second_input_in_the_same_order(tmp_path):
    a = _file()
    pair = align_pair(a, _file())
    b = _file()
    assert np.shares_memory(align_pair(a, b).z2, b.logits)
    shuffled = LogitsFile(ids=b.ids[::-1], labels=b.labels[::-1], logits=b.logits[::-1])
    np.testing.assert_array_equal(align_pair(a, shuffled).z2, pair.z2)


def test_alpha_search_matches_every_class_argmax():
    rng = np.random.default_rng(3)
    for n, c, scale in [(300, 2, 3.0), (500, 7, 1.0), (400, 60, 0.3), (300, 200, 2.0)]:
        y = rng.integers(0, c, n)
        y[:5] = -1
        z1 = (rng.standard_normal((n, c)) * scale + 2 * np.eye(c)[np.maximum(y, 0)]).astype(
            np.float32
        )
        z2 = (rng.standard_normal((n, c)) * scale + np.eye(c)[np.maximum(y, 0)]).astype(np.float32)
        z2[:20] = z1[:20]  # exact ties between classes and inputs
        for metric in ("acc", "macro_acc"):
            q1, q2 = methods.softmax(z1, 1.3), methods.softmax(z2, 0.7)
            w = methods.metric_weights(y, metric)
            alphas = np.linspace(0, 1, 101)
            ref = [(((a * q1 + (1 - a) * q2).argmax(1) == y) * w).sum() for a in alphas]
            np.testing.assert_allclose(methods._alpha_hits(q1, q2, y, w, alphas), ref, atol=1e-12)
            best = np.flatnonzero(np.array(ref) >= max(ref) - methods.TIE_ATOL)
            want = alphas[best[np.argmin(np.abs(alphas[best] - 0.5))]]
            assert methods.fit_alpha(z1, z2, y, 1.3, 0.7, metric=metric) == want


def test_temperature_searches_give_the_values_of_before():
    """The values the per-row implementations (before blocks and vectorisation) gave."""
    rng = np.random.default_rng(7)
    n, c = 400, 6
    y = rng.integers(0, c, n)
    z = (rng.standard_normal((n, c)) * 1.5 + 2.5 * np.eye(c)[y] * rng.random(c)).astype(np.float32)
    assert calibration.fit_temperature(z, y) == pytest.approx(2.19990063782915, rel=1e-12)
    before = [1.9598886966705322, 1.3858505487442017, 2.19990063782915, 2.1999006271362305,
              2.4693050384521484, 7.839554786682129]  # fmt: skip
    np.testing.assert_allclose(calibration.fit_classwise_temperature(z, y), before, rtol=1e-9)
    np.testing.assert_allclose(calibration.fit_classwise_temperature(z, y, block_rows=64), before,
                               rtol=1e-9)  # fmt: skip


def test_bench_fusion_imagenet_code_path_at_a_tiny_size(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_fusion", ROOT / "benchmarks" / "bench_fusion.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--size", "imagenet", "--scale", "0.0002", "--threads", "1",
                "--workdir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert "imagenet: 256 / 10 / 10 x 1000 classes, 1 seed(s), float16 logits" in out
    assert "fusion ablation:" in out and "peak RSS:" in out and "target 12 GiB" in out
    assert list(tmp_path.iterdir()) == []  # the random runs went with the temporary folder


def _rss_file_kib() -> int:
    import re

    return int(re.search(r"RssFile:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_cache_drops_the_pages_of_files_it_no_longer_uses(tmp_path):
    """check_finite leaves no page of a mapped file resident; touching one maps it back in, and
    loading files beyond ``resident`` drops the pages of the least recently used ones."""
    from occam_l2r.fusion.inputs import LogitsCache

    big = LogitsFile(ids=np.arange(8000).astype(str), labels=np.zeros(8000),
                     logits=np.ones((8000, 1000), np.float32))  # 32 MB  # fmt: skip
    for name in ("a", "b"):
        big.save(tmp_path / name / "logits" / "val.npz")
    cache = LogitsCache(resident=1)
    before = _rss_file_kib()
    a = cache.get(tmp_path / "a", "val")
    assert _rss_file_kib() - before < 8_000  # the finiteness pass did not leave it resident
    assert float(a.logits.sum()) == 8000 * 1000
    assert _rss_file_kib() - before > 24_000  # touched: resident
    cache.get(tmp_path / "b", "val")  # a is now beyond the one resident file
    assert _rss_file_kib() - before < 8_000
    assert float(a.logits[:10].sum()) == 10 * 1000  # still readable from the file


def test_saved_members_are_aligned_for_mapping(tmp_path):
    """Every member's data starts at a multiple of DATA_ALIGN in the file, so a mapped matrix is
    aligned (numpy gathers from an unaligned mapping about 90x slower); np.load reads it as before."""
    from occam_l2r.logits import DATA_ALIGN, LogitsFile, memmap_member

    for dtype in (np.float32, np.float16):
        lf = LogitsFile(
            ids=[f"img_{i}.png" for i in range(37)],
            labels=np.arange(37) % 5,
            logits=np.random.default_rng(0).normal(size=(37, 5)).astype(np.float32),
            class_names=list("abcde"),
        )
        path = lf.save(tmp_path / f"{np.dtype(dtype).name}.npz", dtype=dtype)
        for name in ("ids", "labels", "logits", "fallback"):
            mapped = memmap_member(path, name)
            assert mapped.offset % DATA_ALIGN == 0 and mapped.flags.aligned, name
        with np.load(path) as z:
            np.testing.assert_array_equal(z["logits"], lf.logits.astype(dtype))
