"""One pass over the test splits after ``fit``: ``--predict_after_fit`` writes the logits of
every split and scores the test splits on the way (the pipeline's runs), with the metrics a
separate ``test`` of the best checkpoint writes."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from occam_l2r.cli import main
from occam_l2r.logits import LogitsFile, read_meta
from occam_l2r.tasks.classifier import ClassifierTask
from tests.conftest import tiny_fit_args

TEST_SPLITS = ("test_id", "test_shift", "test_random")


@pytest.mark.slow
def test_predict_after_fit_reads_each_test_split_once(synthetic_copy, tmp_path, monkeypatch):
    seen: Counter[str] = Counter()
    logits_of = ClassifierTask.logits_of

    def counting(self, batch):  # every forward pass of the run, keyed by image id
        seen.update(batch["id"])
        return logits_of(self, batch)

    monkeypatch.setattr(ClassifierTask, "logits_of", counting)
    out = tmp_path / "runs"
    cli = main(["fit", *tiny_fit_args(synthetic_copy, out), "--predict_after_fit", "true"])
    run = out / "tiny" / "FG_C" / "version_0"
    best = cli.trainer.checkpoint_callback.best_model_path
    assert best

    # one pass: every test image went through the model exactly once (old: a test, then a predict)
    tested = {i: n for i, n in seen.items() if i.split("/")[1] in TEST_SPLITS}
    assert len(tested) == 3 * 8 and set(tested.values()) == {1}, tested
    for split in ("train", "val", *TEST_SPLITS):  # every split's logits, in the run folder
        assert (run / "logits" / f"{split}.npz").is_file()
    assert not (run / "predict").exists()
    scored = json.loads((run / "test_metrics.json").read_text())

    # the same file as a test of the best checkpoint (which writes into the same run folder)
    main(["test", *tiny_fit_args(synthetic_copy, out), "--ckpt_path", best])
    assert json.loads((run / "test_metrics.json").read_text()) == scored
    for split in TEST_SPLITS:
        f = LogitsFile.load(run / "logits" / f"{split}.npz")
        acc = float(np.mean(f.logits.argmax(1) == f.labels))
        assert scored[f"{split}/acc"] == pytest.approx(acc)
        assert scored[f"{split}/num_samples"] == len(f.labels) == 8

    # --logits_dtype float16: the same predictions stored as format 3 (half the size)
    stored = {s: LogitsFile.load(run / "logits" / f"{s}.npz").logits for s in TEST_SPLITS}
    main(["predict", *tiny_fit_args(synthetic_copy, out), "--ckpt_path", best,
          "--logits_dtype", "float16"])  # fmt: skip
    for split in TEST_SPLITS:
        path = run / "logits" / f"{split}.npz"
        assert read_meta(path)["format_version"] == 3
        half = LogitsFile.load(path).logits
        assert half.dtype == np.float16
        np.testing.assert_array_equal(half, stored[split].astype(np.float16))
