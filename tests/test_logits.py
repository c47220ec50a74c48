"""Logits files: the streamed merge of part files (order, DDP duplicates, windows), format 1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from occam_l2r.logits import LogitsFile, LogitsPart, merge_parts


def _part(index: list[int], c: int = 5) -> LogitsPart:
    idx = np.asarray(index, np.int64)
    return LogitsPart(
        index=idx,
        ids=np.array([f"img/{i:04d}.png" for i in idx]),
        labels=idx % c,
        groups=np.array([f"g{i % 2}" for i in idx]),
        candidates=np.full(len(idx), -1),
        fallback=idx % 3 == 0,
        logits=np.stack([np.arange(c, dtype=np.float32) + i for i in idx]) if len(idx) else np.zeros((0, c), np.float32),
    )  # fmt: skip


@pytest.mark.parametrize("window_bytes", [20, 10_000_000])  # a window of 1 row, and one window
def test_merge_two_ranks_in_dataset_order_padding_once(tmp_path, window_bytes):
    # 11 samples on 2 ranks, rank r takes r, r+2, ...; rank 1 got sample 0 again as padding;
    # each rank wrote two parts
    rank0, rank1 = list(range(0, 11, 2)), [*range(1, 11, 2), 0]
    parts = []
    for r, index in enumerate((rank0, rank1)):
        for k, chunk in enumerate((index[:3], index[3:])):
            parts.append(_part(chunk).save(tmp_path / "parts" / f"rank{r:03d}-{k:06d}.npz"))
    out = merge_parts(parts, tmp_path / "test.npz", "test", "FG_C", "run", list("abcde"),
                      {"model": {"lr": 1}}, window_bytes=window_bytes)  # fmt: skip
    lf = LogitsFile.load(out)
    assert list(lf.ids) == [f"img/{i:04d}.png" for i in range(11)]
    assert lf.labels.tolist() == [i % 5 for i in range(11)]
    assert lf.groups.tolist() == [f"g{i % 2}" for i in range(11)]
    assert lf.fallback.tolist() == [i % 3 == 0 for i in range(11)]
    np.testing.assert_array_equal(lf.logits[:, 0], np.arange(11, dtype=np.float32))
    assert lf.logits.shape == (11, 5) and lf.split == "test" and lf.view == "FG_C"
    assert lf.class_names == list("abcde") and lf.config == {"model": {"lr": 1}}


def test_merge_of_no_parts_is_an_empty_file(tmp_path):
    lf = LogitsFile.load(merge_parts([], tmp_path / "x.npz", "x", "FULL", "r", list("abc"), {}))
    assert lf.logits.shape == (0, 3) and len(lf.ids) == 0


def test_format_1_files_still_read(tmp_path):
    meta = {"format_version": 1, "split": "val", "view": "FULL", "run": "r",
            "class_names": ["a", "b"], "config": {}}  # fmt: skip
    np.savez(tmp_path / "v1.npz", ids=np.array(["x", "y"]), labels=np.array([0, 1]),
             groups=np.array(["", ""]), logits=np.zeros((2, 2), np.float32),
             candidates=np.array([-1, -1]), meta=np.array(json.dumps(meta)))  # fmt: skip
    lf = LogitsFile.load(tmp_path / "v1.npz")
    assert lf.fallback.tolist() == [False, False] and list(lf.ids) == ["x", "y"]
    meta["format_version"] = 99
    np.savez(tmp_path / "v99.npz", ids=np.array(["x"]), labels=np.array([0]),
             logits=np.zeros((1, 2), np.float32), meta=np.array(json.dumps(meta)))  # fmt: skip
    with pytest.raises(ValueError, match="re-export"):
        LogitsFile.load(tmp_path / "v99.npz")
