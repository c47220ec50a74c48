"""Rehearsal of every paper table: each dataset's real route on its fake layout (issue 19, item 1).

For each dataset folder of ``configs/``, the commands of its tables (``segment`` → ``pipeline``,
which fits every view, predicts, fuses and writes the report; zero-shot ``test``, ``occam``,
``discover`` where the papers have them) run through :func:`occam_l2r.cli.main` with the shipped
configs plus only the ``smoke`` overlays: ``configs/smoke/*.yaml`` (the tiny random-initialised
segmenters, ConvNeXtV2-Atto from scratch at 32 px for one short epoch, the tiny CLIP ViT and its
AlphaCLIP tower at 64 px) and the dataset's ``configs/<dataset>/smoke*.yaml`` (the fake layout's
paths, one seed; SAM's automatic masks as OCCAM's mask source; MOVi's fake instance ids as the
CropFormer masks that the real route imports). The paths are
relative, as a user runs them from the repository root: each test works in a folder holding a
link to ``configs/`` and ``rehearsal/`` (the layout of ``tests/data/<dataset>/make_fake.py`` and
the tiny weights). A real run differs from a rehearsal only in weights and paths.

The same preparation from the command line (docs/datasets.md, "Rehearsal")::

    python tests/test_rehearsal.py rehearsal      # every fake layout + rehearsal/weights/

:func:`test_docs_give_each_rehearsal` checks that docs/datasets.md gives every command run here.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
FAKES = REPO / "tests" / "data"
#: where the rehearsal paths of the smoke overlays point (relative to the working folder)
REHEARSAL = Path("rehearsal")
SMOKE_SEGMENTERS = {
    "gdino_sam": "configs/smoke/segment_gdino_sam.yaml",
    "owlv2_sam": "configs/smoke/segment_owlv2_sam.yaml",
    "sam_auto": "configs/smoke/segment_sam_auto.yaml",
}


def _fake(name: str):  # noqa: ANN202 - a module loaded from its file
    """``tests/data/<name>/make_fake.py`` as a module (``tests/data`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"fake_{name}", FAKES / name / "make_fake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_weights(folder: Path) -> Path:
    """The tiny models the smoke overlays name: GroundingDINO, OWLv2, SAM, CLIP ViT and its
    AlphaCLIP tower, all random-initialised (occam_l2r.segment.tiny, models/clip_configs)."""
    import torch

    from occam_l2r.models.alpha_clip import AlphaClipEncoder
    from occam_l2r.models.clip_loading import load_clip
    from occam_l2r.segment.tiny import tiny_grounding_dino, tiny_owlv2, tiny_sam

    sys.path.insert(0, str(REPO))
    from tests._clip_tiny import TINY_VIT, save_tiny_clip

    folder.mkdir(parents=True, exist_ok=True)
    tiny_grounding_dino(folder / "grounding_dino")
    tiny_owlv2(folder / "owlv2")
    tiny_sam(folder / "sam_tiny.pth")
    clip_path = save_tiny_clip(folder / "clip_tiny_vit.pt", name=TINY_VIT)
    clip = load_clip(TINY_VIT, pretrained=str(clip_path))
    alpha = AlphaClipEncoder(clip.model.visual, clip.image_size, clip.mean, clip.std)
    torch.save(alpha.tower.state_dict(), folder / "alpha_clip_tiny_vit.pth")
    return folder


def _imagenet9(root: Path) -> Path:
    """The ImageNet-9 release and the repository's ``in_to_in9.json`` in its root (the
    ``imagenet1k_max`` label space of configs/occam/imagenet9.yaml reads it)."""
    fake = _fake("imagenet9")
    fake.make_fake(root)
    fake.write_in_to_in9(root / "in_to_in9.json")
    return root


def _movi(rehearsal: Path) -> Path:
    """MOVi-C and MOVi-E, and a stand-in for CropFormer's output: one instance-id PNG per frame
    (the fake's own ids) under ``masks/cropformer/movi_<level>``, the folder the import reads."""
    import shutil

    root = rehearsal / "movi"
    for level in ("C", "E"):
        for image_id in _fake("movi").make_fake(root, level):
            png = rehearsal / "masks" / "cropformer" / f"movi_{level.lower()}" / image_id
            png.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / image_id.replace(".jpg", "_mask.png"), png.with_suffix(".png"))
    return root


@dataclass(frozen=True)
class Route:
    """A dataset's rehearsal: how its fake layout is written and the commands of its tables.

    Attributes:
        fake: writes the fake layout under the rehearsal folder (given as ``rehearsal/``).
        commands: each a verb and its ``--config`` files (repository paths), in order.
    """

    fake: Callable[[Path], object]
    commands: tuple[tuple[str, ...], ...]


def _segment(dataset: str, config: str, kind: str, paths: str = "smoke_segment") -> tuple:
    return (
        "segment",
        f"configs/segment/{config}.yaml",
        SMOKE_SEGMENTERS[kind],
        f"configs/{dataset}/{paths}.yaml",
    )


def _zeroshot(dataset: str) -> tuple:
    return (
        "test",
        "configs/zeroshot/base.yaml",
        f"configs/zeroshot/{dataset}.yaml",
        "configs/smoke/zeroshot.yaml",
        f"configs/{dataset}/smoke.yaml",
    )


def _occam(dataset: str) -> tuple:
    return (
        "occam",
        "configs/occam/clip_l14.yaml",
        f"configs/occam/{dataset}.yaml",
        "configs/smoke/occam.yaml",
        f"configs/{dataset}/smoke_occam.yaml",
    )


def _pipeline(dataset: str) -> tuple:
    return (
        "pipeline",
        f"configs/{dataset}/pipeline.yaml",
        f"configs/{dataset}/smoke_pipeline.yaml",
    )


ROUTES: dict[str, Route] = {
    "fungitastic": Route(
        lambda r: _fake("fungitastic").make_fake(r / "FungiTastic", with_masks=False),
        (_segment("fungitastic", "fungitastic_gdino_sam", "gdino_sam"), _pipeline("fungitastic")),
    ),
    "spawrious": Route(
        lambda r: _fake("spawrious").make_fake(r / "spawrious", per_folder=3),
        (_segment("spawrious", "spawrious_gdino_sam", "gdino_sam"), _pipeline("spawrious")),
    ),
    "stanford_dogs": Route(
        lambda r: _fake("stanford_dogs").make_fake(r / "StanfordDogs"),
        (
            _segment("stanford_dogs", "stanford_dogs_gdino_sam", "gdino_sam"),
            _pipeline("stanford_dogs"),
        ),
    ),
    "hard_imagenet": Route(
        lambda r: _fake("hard_imagenet").make_fake(r / "hard_imagenet"),
        (
            _segment("hard_imagenet", "hard_imagenet_owlv2_sam", "owlv2_sam"),
            _pipeline("hard_imagenet"),
        ),
    ),
    "imagenet": Route(
        lambda r: _fake("imagenet").make_fake(r / "ILSVRC2012"),
        (_segment("imagenet", "imagenet_owlv2_sam", "owlv2_sam"), _pipeline("imagenet")),
    ),
    "counteranimal": Route(
        lambda r: _fake("counteranimal").make_fake(r / "CounterAnimal"),
        (
            _segment("counteranimal", "counteranimal_gdino_sam", "gdino_sam"),
            _zeroshot("counteranimal"),
            _segment(
                "counteranimal", "counteranimal_sam_auto", "sam_auto", "smoke_segment_sam_auto"
            ),
            _occam("counteranimal"),
        ),
    ),
    "imagenet9": Route(
        lambda r: _imagenet9(r / "bg_challenge"),
        (_segment("imagenet9", "imagenet9_sam_auto", "sam_auto"), _occam("imagenet9")),
    ),
    "imagenet_d": Route(
        lambda r: _fake("imagenet_d").make_fake(r),
        (_segment("imagenet_d", "imagenet_d_sam_auto", "sam_auto"), _occam("imagenet_d")),
    ),
    "urbancars": Route(
        lambda r: _fake("urbancars").make_fake(r),
        (_segment("urbancars", "urbancars_sam_auto", "sam_auto"), _occam("urbancars")),
    ),
    "waterbirds": Route(
        lambda r: _fake("waterbirds").make_fake(r / "waterbird_complete95_forest2water2"),
        (_segment("waterbirds", "waterbirds_sam_auto", "sam_auto"), _occam("waterbirds")),
    ),
    "movi": Route(
        lambda r: _movi(r),
        (
            (
                "segment",
                "configs/movi/sam_auto.yaml",
                SMOKE_SEGMENTERS["sam_auto"],
                "configs/movi/smoke_segment.yaml",
            ),
            (
                "segment",
                "configs/movi/sam_auto.yaml",
                "configs/movi/level_e.yaml",
                SMOKE_SEGMENTERS["sam_auto"],
                "configs/movi/smoke_segment_e.yaml",
            ),
            ("segment", "configs/occam/import_masks.yaml", "configs/movi/smoke_cropformer.yaml"),
            ("segment", "configs/occam/import_masks.yaml", "configs/movi/smoke_cropformer_e.yaml"),
            ("discover", "configs/movi/discover.yaml", "configs/movi/smoke_discover.yaml"),
        ),
    ),  # fmt: skip
}


def command_line(command: tuple[str, ...]) -> str:
    """The shell command of a route step, as docs/datasets.md writes it."""
    verb, *files = command
    return " ".join(["python -m occam_l2r", verb, *(f"--config {f}" for f in files)])


def argv(command: tuple[str, ...]) -> list[str]:
    verb, *files = command
    return [verb, *(a for f in files for a in ("--config", f))]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_weights(tmp_path_factory.mktemp("rehearsal") / "weights")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and leave the other core to the other tests)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workdir(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that looks like the repository root to the configs' relative paths."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / REHEARSAL).mkdir()
    (tmp_path / REHEARSAL / "weights").symlink_to(weights)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(ROUTES))
def test_rehearsal(dataset: str, workdir: Path) -> None:
    from occam_l2r.cli import main

    route = ROUTES[dataset]
    route.fake(REHEARSAL)
    for command in route.commands:
        result = main(argv(command))
        assert _output(command[0], result).is_file(), command


def _output(verb: str, result: object) -> Path:
    """The file that shows a route step ran to its end: the report, the OCCAM table, the test
    metrics, the discovery table, the store's summary."""
    if verb == "pipeline":
        return Path(result["report"])
    if verb == "occam":
        return Path(result["table"]["markdown"])
    if verb == "test":
        return Path(result.trainer.log_dir) / "test_metrics.json"
    if verb == "discover":
        return Path(result["table"])
    return Path(result["store"]) / "summary.json"


def test_every_dataset_folder_is_rehearsed() -> None:
    datasets = {p.parent.name for p in (REPO / "configs").glob("*/data.yaml")}
    datasets |= {p.parent.name for p in (REPO / "configs").glob("movi/*.yaml")}
    assert datasets - {"synthetic"} <= set(ROUTES)
    missing = [f for r in ROUTES.values() for c in r.commands for f in c[1:]]
    assert not [f for f in missing if not (REPO / f).is_file()]


def test_docs_give_each_rehearsal() -> None:
    docs = (REPO / "docs" / "datasets.md").read_text()
    flat = " ".join(docs.replace("\\\n", " ").split())
    missing = [command_line(c) for r in ROUTES.values() for c in r.commands]
    missing = [c for c in missing if c not in flat]
    assert not missing, f"docs/datasets.md does not give the rehearsal commands {missing}"


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "rehearsal")
    write_weights(out / "weights")
    for name, route in ROUTES.items():
        route.fake(out)
        print(f"{name}: fake layout under {out}")
