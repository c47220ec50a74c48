"""The fault probe of issue 17 (docs/runs.md, "Faults probed"): a full disk during a store or
logits write, stores and logits files of a newer format, image ids that climb out of a folder,
two fits pointed at one run folder."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from occam_l2r.classify.preview import picture_name
from occam_l2r.cli import main
from occam_l2r.data.datasets.image_files import list_image_files
from occam_l2r.logits import LOGITS_FORMAT_VERSION, LogitsFile, LogitsFileError
from occam_l2r.store import STORE_FORMAT_VERSION, SegmentationStore, StoreFormatError
from occam_l2r.store_files import atomic_write_table, atomic_write_text
from occam_l2r.tasks.run_folder import RunFolderError, hold_run_folder

REPO = Path(__file__).parents[1]
CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"


#: the file-size limit of the full-disk probe
LIMIT = 16 * 1024


@contextlib.contextmanager
def file_size_limit() -> Iterator[int]:
    """A 16 KiB limit on the size of files this process writes (what a full disk does to a
    write: Python ignores SIGXFSZ, so the write fails with EFBIG). Held only around the writes
    probed: pytest's own output (a log file past 16 KiB) must not fall under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))
    try:
        yield LIMIT
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_full_disk_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    atomic_write_text("{}", manifest)
    with pytest.raises(OSError), file_size_limit():
        atomic_write_text("x" * (4 * LIMIT), manifest)
    assert manifest.read_text() == "{}" and _files(tmp_path) == ["manifest.json"]

    big = pa.table({"x": np.random.default_rng(0).random(20 * LIMIT)})
    with pytest.raises(OSError), file_size_limit():
        atomic_write_table(big, tmp_path / "part-rank000-1_2-000000.parquet")
    assert _files(tmp_path) == ["manifest.json"]

    n = 4 * LIMIT
    logits = LogitsFile(ids=np.array([f"i{k}" for k in range(n)]), labels=np.zeros(n, np.int64),
                        logits=np.random.default_rng(0).random((n, 4), np.float32))  # fmt: skip
    with pytest.raises(OSError), file_size_limit():
        logits.save(tmp_path / "test.npz")
    assert _files(tmp_path) == ["manifest.json"]


def test_a_logits_file_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = LogitsFile(ids=np.array(["a"]), labels=np.zeros(1, np.int64),
                      logits=np.zeros((1, 2), np.float32)).save(tmp_path / "test.npz")  # fmt: skip
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = LOGITS_FORMAT_VERSION + 1
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(LogitsFileError, match=rf"{path}.*format {LOGITS_FORMAT_VERSION + 1}"):
        LogitsFile.load(path)


def test_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    body = {"format_version": STORE_FORMAT_VERSION + 1, "segmenter": "x", "config_hash": "0"}
    (store / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(StoreFormatError, match=f"format version {STORE_FORMAT_VERSION + 1}"):
        SegmentationStore(store)


def test_image_ids_that_climb_out_never_name_an_output_file(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.png").write_bytes(b"")
    (images / "sub" / "loop").symlink_to("..")  # a symlink loop is not followed
    assert [i for i, _ in list_image_files(images)] == ["a.png"]
    listing = tmp_path / "list.txt"
    listing.write_text("../../etc/passwd.png\n/etc/hostname\n")
    ids = [i for i, _ in list_image_files(listing)]
    assert ids == ["../../etc/passwd.png", "/etc/hostname"]  # read as the user listed them
    names = [picture_name(k, len(ids), i) for k, i in enumerate(ids)]
    assert names == ["0000_etc_passwd.png", "0001_etc_hostname.png"]
    assert all("/" not in n and not n.startswith(".") for n in names)


@pytest.mark.slow
def test_two_fits_pointed_at_one_run_folder(synthetic_copy: Path, tmp_path: Path) -> None:
    """A second fit in a pinned folder while the first still trains (before its first
    checkpoint, when "holds checkpoints" cannot tell) is refused before it writes anything."""
    run = tmp_path / "runs" / "tiny" / "FG_C" / "seed0"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from occam_l2r.tasks.run_folder import "
         "hold_run_folder; hold_run_folder(sys.argv[1]); print('held', flush=True); "
         "time.sleep(300)", str(run)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["fit", "--config", str(CONF),
                "--data.init_args.dataset.init_args.root", str(synthetic_copy),
                "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
                "--trainer.default_root_dir", str(tmp_path / "runs"),
                "--trainer.logger.init_args.version", "seed0"]  # fmt: skip
        with pytest.raises(RunFolderError, match=f"another fit is writing into {run}"):
            main(args)
        assert not any(run.iterdir())  # nothing written into the other run's folder
        proc = subprocess.run([sys.executable, "-m", "occam_l2r", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 3 and "another fit is writing" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    start = time.monotonic()
    fd = hold_run_folder(run)  # a killed holder lets go at once
    assert fd is not None and time.monotonic() - start < 1
    os.close(fd)
