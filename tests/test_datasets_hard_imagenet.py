"""HardImageNet on a fake copy of the original layout (tests/data/hard_imagenet/make_fake.py),
and its metadata pickles read as plain data only (a malicious pickle is refused, also from the
command line)."""

from __future__ import annotations

import os
import pickle
import shlex
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.data.datasets._layout import DatasetLayoutError
from occam_l2r.data.datasets.hard_imagenet import HardImageNet, UnsafePickleError, load_plain_pickle
from occam_l2r.errors import EXIT_USER_ERROR
from tests.conftest import load_fake

HERE = Path(__file__).parent
fake = load_fake("hard_imagenet")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {k: str(v) for k, v in fake.make_fake(tmp_path_factory.mktemp("hin")).items()}


def test_records_and_masks(roots: dict[str, str]) -> None:
    ds = HardImageNet(root=roots["root"], mask_root=roots["mask_root"])
    assert ds.num_classes == 15
    assert ds.class_names[0] == "dog sled" and ds.class_names[3] == "ski"
    assert ds.imagenet_indices[0] == 537 and ds.wnids[0] == "n03218198"
    assert ds.imagenet_class_indices == fake.HIN_IDX and ds.imagenet_to_class[890] == 12
    assert ds.val_split is None and ds.test_splits == ["test"]
    train, test = ds.records("train"), ds.records("test")
    assert len(train) == 9 and len(test) == 6
    assert sorted({r.label for r in train}) == [0, 3, 12]
    rec = train[0]
    assert rec.image_id == "train/n03218198/n03218198_101.JPEG"
    assert rec.metadata == {"wnid": "n03218198", "imagenet_index": 537}
    assert test[0].image_id.startswith("val/n03218198/ILSVRC2012_val_")
    for r in (rec, test[0]):
        assert ds.read_image(r).shape == (*fake.IMAGE_HW, 3)
        (mask,) = ds.gt_masks(r)
        assert mask.shape == fake.IMAGE_HW
        assert mask[8, 10] and not mask[0, 0] and not mask[15, 20]


def test_flat_val_and_extra_test_sets(tmp_path: Path) -> None:
    roots = fake.make_fake(tmp_path, flat_val=True)
    ds = HardImageNet(**{k: str(v) for k, v in roots.items()})
    assert ds.test_splits == ["test", "test_lt", "test_ct"]
    assert ds.records("test")[0].image_id.startswith("val/ILSVRC2012_val_")
    assert ds.read_image(ds.records("test")[0]).shape == (*fake.IMAGE_HW, 3)
    lt = ds.records("test_lt")
    assert [r.label for r in lt] == [0, 0, 12, 12]
    assert lt[0].image_id == "long_tail/n03218198/img0.jpg"
    assert ds.read_image(lt[0]).shape == (*fake.IMAGE_HW, 3)
    assert [r.label for r in ds.records("test_ct")] == [0, 0]
    with pytest.raises(ValueError, match="detector segmenter"):
        ds.gt_masks(lt[0])


def test_missing_roots(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="hardImageNet.zip"):
        HardImageNet(root=str(tmp_path), mask_root=str(tmp_path / "nowhere"))
    roots = fake.make_fake(tmp_path)
    ds = HardImageNet(root=str(tmp_path / "no_imagenet"), mask_root=str(roots["mask_root"]))
    with pytest.raises(FileNotFoundError, match="ILSVRC2012"):
        ds.records("train")
    bad = tmp_path / "bad_lt" / "not_a_class"
    bad.mkdir(parents=True)
    ds = HardImageNet(
        root=str(roots["root"]), mask_root=str(roots["mask_root"]), long_tail_root=str(bad.parent)
    )
    with pytest.raises(ValueError, match="not_a_class"):
        ds.records("train")
    flat = tmp_path / "flat_ct"
    flat.mkdir()
    fake._save(flat / "img0.jpg", np.zeros((*fake.IMAGE_HW, 3), dtype=np.uint8))
    ds = HardImageNet(
        root=str(roots["root"]), mask_root=str(roots["mask_root"]), constant_root=str(flat)
    )
    with pytest.raises(DatasetLayoutError, match="no images in class folders"):
        ds.records("test_ct")


class _Exploit:
    """Pickles as a call of ``os.system`` that would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_metadata_pickles_admit_plain_data_only(tmp_path: Path) -> None:
    plain = {
        537: "n03218198",
        "list": [1, 2.5, -3, True, None, complex(1, 2), b"\x00\xff", "ü"],
        "tuple": (1, ("a",)),
        "sets": [{1, 2}, frozenset({"x"})],
        "ordered": OrderedDict(a=1),
        "numpy": [np.int64(795), np.float32(1.5), np.uint8(7)],
    }
    path = tmp_path / "meta.pkl"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path.write_bytes(pickle.dumps(plain, protocol=protocol))
        assert load_plain_pickle(path) == plain, protocol
    marker = tmp_path / "pwned"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps([537, _Exploit(marker)], protocol=protocol))
        with pytest.raises(
            UnsafePickleError, match=r"meta\.pkl: it names the global posix\.system"
        ):
            load_plain_pickle(path)
    for other, name in ((np.arange(3), "_reconstruct"), (Path("/x"), "PosixPath")):
        path.write_bytes(pickle.dumps(other))
        with pytest.raises(UnsafePickleError, match=name):
            load_plain_pickle(path)
    assert not marker.exists(), "the payload never ran"
    path.write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match=r"meta\.pkl \(EOFError"):
        load_plain_pickle(path)


def test_malicious_metadata_pickle_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    roots = fake.make_fake(tmp_path / "hin")
    marker = tmp_path / "pwned"
    evil = roots["mask_root"] / "meta" / "hard_imagenet_idx.pkl"
    evil.write_bytes(pickle.dumps([537, _Exploit(marker)]))
    cfg = yaml.safe_load((HERE / "conf" / "tiny_fg.yaml").read_text())
    dataset = {"root": str(roots["root"]), "mask_root": str(roots["mask_root"])}
    cfg["data"]["init_args"].update(
        dataset={"class_path": "occam_l2r.data.datasets.hard_imagenet.HardImageNet",
                 "init_args": dataset},
        view="FULL", segmentation=None,
    )  # fmt: skip
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    conf = tmp_path / "fit.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "fit", "--config", str(conf)])
    with pytest.raises(SystemExit) as exit_:
        main()  # what `python -m occam_l2r fit --config fit.yaml` runs
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("occam_l2r fit: error:")]
    assert f"refused to unpickle {evil}: it names the global posix.system" in line
    assert "Traceback" not in err and not marker.exists(), "the payload never ran"
