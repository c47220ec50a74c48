"""Every config under configs/ parses with the verb it belongs to (issue 10, acceptance).

:data:`RULES` maps each YAML file, by its path under ``configs/``, to its verb and to the configs
composed before and after it (an overlay parses on its base). A file that no rule names fails
:func:`test_every_config_has_a_verb`: register a new config here. Each file is then parsed as
``python -m occam_l2r VERB --config ... --print_config`` through :func:`occam_l2r.cli.main`
(in-process: about 0.3-1 s a parse); every view of every pipeline config parses for ``fit``
and trains the view it is named after; each dataset overlay reads the store that a segment
config writes, of the same dataset; each fusion config builds its sweep and reads the runs of a
pipeline config. Nothing needs weights or data: parsing instantiates no dataset or model.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from lightning.pytorch.cli import LightningCLI

from occam_l2r.cli import main
from occam_l2r.commands import run_function
from occam_l2r.commands.pipeline import plan_runs
from occam_l2r.fusion.config import SweepConfig

REPO = Path(__file__).parents[1]
CONFIGS = REPO / "configs"
TEMPLATE = "templates/convnextv2_base.yaml"


@dataclass(frozen=True)
class Rule:
    """The verb of the configs matching ``pattern`` (a glob per path part, under configs/).

    Attributes:
        pattern: e.g. ``occam/*.yaml``; ``*`` stays within one folder.
        verb: the ``python -m occam_l2r`` verb that reads them.
        before: configs composed before the file (its base), under configs/.
        after: configs composed after it (an overlay that completes a base).
    """

    pattern: str
    verb: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    def matches(self, rel: str) -> bool:
        parts, pattern = PurePosixPath(rel).parts, PurePosixPath(self.pattern).parts
        return len(parts) == len(pattern) and all(map(fnmatchcase, parts, pattern))


#: the rehearsal overlays of each dataset (tests/test_rehearsal.py): its segment config and the
#: configs/smoke/ segmenter overlay of that kind
SMOKE_SEGMENT = {
    "fungitastic": ("fungitastic_gdino_sam", "gdino_sam"),
    "spawrious": ("spawrious_gdino_sam", "gdino_sam"),
    "stanford_dogs": ("stanford_dogs_gdino_sam", "gdino_sam"),
    "hard_imagenet": ("hard_imagenet_owlv2_sam", "owlv2_sam"),
    "imagenet": ("imagenet_owlv2_sam", "owlv2_sam"),
}
SMOKE_RULES = tuple(
    rule
    for d, (segment, kind) in SMOKE_SEGMENT.items()
    for rule in (
        Rule(f"{d}/smoke.yaml", "fit",
             before=(TEMPLATE, f"{d}/data.yaml", "templates/views/fg_c.yaml", "smoke/fit.yaml")),
        Rule(f"{d}/smoke_segment.yaml", "segment",
             before=(f"segment/{segment}.yaml", f"smoke/segment_{kind}.yaml")),
        Rule(f"{d}/smoke_pipeline.yaml", "pipeline", before=(f"{d}/pipeline.yaml",)),
    )
)  # fmt: skip
#: the OCCAM tables' datasets: their SAM-auto segment overlay and their occam overlay
SMOKE_OCCAM = ("counteranimal", "imagenet9", "imagenet_d", "urbancars", "waterbirds")
SMOKE_OCCAM_RULES = tuple(
    rule
    for d in SMOKE_OCCAM
    for rule in (
        Rule(f"{d}/smoke_occam.yaml", "occam",
             before=("occam/clip_l14.yaml", f"occam/{d}.yaml", "smoke/occam.yaml")),
        Rule(f"{d}/smoke_segment_sam_auto.yaml" if d == "counteranimal" else f"{d}/smoke_segment.yaml",
             "segment", before=(f"segment/{d}_sam_auto.yaml", "smoke/segment_sam_auto.yaml")),
    )
)  # fmt: skip
#: CounterAnimal's L2R² route (GroundingDINO store, zero-shot test) and MOVi's discovery route
SMOKE_OTHER_RULES = (
    Rule("counteranimal/smoke_segment.yaml", "segment",
         before=("segment/counteranimal_gdino_sam.yaml", "smoke/segment_gdino_sam.yaml")),
    Rule("counteranimal/smoke.yaml", "test",
         before=("zeroshot/base.yaml", "zeroshot/counteranimal.yaml", "smoke/zeroshot.yaml")),
    Rule("movi/smoke_segment.yaml", "segment",
         before=("movi/sam_auto.yaml", "smoke/segment_sam_auto.yaml")),
    Rule("movi/smoke_segment_e.yaml", "segment",
         before=("movi/sam_auto.yaml", "movi/level_e.yaml", "smoke/segment_sam_auto.yaml")),
    Rule("movi/smoke_cropformer*.yaml", "segment", before=("occam/import_masks.yaml",)),
    Rule("movi/smoke_discover.yaml", "discover", before=("movi/discover.yaml",)),
    Rule("smoke/zeroshot.yaml", "test",
         before=("zeroshot/base.yaml", "zeroshot/counteranimal.yaml")),
    Rule("smoke/occam.yaml", "occam", before=("occam/clip_l14.yaml", "occam/waterbirds.yaml")),
)  # fmt: skip

#: the first rule that matches a file decides (specific rules before general ones)
RULES: tuple[Rule, ...] = (
    *SMOKE_RULES,
    *SMOKE_OCCAM_RULES,
    *SMOKE_OTHER_RULES,
    Rule(
        "smoke/fit.yaml",
        "fit",
        before=(TEMPLATE, "fungitastic/data.yaml", "templates/views/fg_c.yaml"),
    ),
    Rule("smoke/segment_gdino_sam.yaml", "segment", before=("segment/fungitastic_gdino_sam.yaml",)),
    Rule("smoke/segment_owlv2_sam.yaml", "segment", before=("segment/imagenet_owlv2_sam.yaml",)),
    Rule("smoke/segment_sam_auto.yaml", "segment", before=("segment/waterbirds_sam_auto.yaml",)),
    Rule(TEMPLATE, "fit"),
    Rule("templates/views/*.yaml", "fit", before=(TEMPLATE, "stanford_dogs/data.yaml")),
    Rule("*/data.yaml", "fit", before=(TEMPLATE,)),
    Rule("*/pipeline*.yaml", "pipeline"),
    Rule("*/fusion*.yaml", "fuse"),
    Rule("*/classify*.yaml", "classify"),
    Rule("hard_imagenet/table1.yaml", "fuse", before=("hard_imagenet/fusion.yaml",)),
    Rule("hard_imagenet/gt_masks.yaml", "fit", before=(TEMPLATE, "hard_imagenet/data.yaml")),
    Rule(
        "hard_imagenet/topk.yaml",
        "predict",
        before=(TEMPLATE, "hard_imagenet/data.yaml", "templates/views/fg_c.yaml"),
    ),
    Rule("imagenet/convnextv2_tiny.yaml", "fit", before=(TEMPLATE, "imagenet/data.yaml")),
    Rule(
        "imagenet/full_timm_checkpoint.yaml",
        "test",
        before=(TEMPLATE, "imagenet/data.yaml", "imagenet/convnextv2_tiny.yaml",
                "templates/views/full.yaml"),
    ),  # fmt: skip
    Rule("spawrious/resnet50_*.yaml", "fit", before=(TEMPLATE, "spawrious/data.yaml")),
    Rule("segment/*.yaml", "segment"),
    Rule("movi/discover.yaml", "discover"),
    Rule("movi/level_e.yaml", "segment", before=("movi/sam_auto.yaml",)),
    Rule("movi/*.yaml", "segment"),
    Rule("occam/import_masks.yaml", "segment"),
    Rule("occam/clip_l14.yaml", "occam", after=("occam/waterbirds.yaml",)),
    Rule("occam/*.yaml", "occam", before=("occam/clip_l14.yaml",)),
    Rule("fusion/*.yaml", "fit"),
    Rule("synthetic/views/*.yaml", "fit", before=("synthetic/base.yaml",)),
    Rule("synthetic/base.yaml", "fit"),
    Rule("synthetic/clip.yaml", "fit"),
    Rule("synthetic/shared_full_fg.yaml", "fit"),
    Rule("synthetic/probe/*.yaml", "fit"),
    Rule("synthetic/zeroshot.yaml", "test"),
    Rule("synthetic/occam.yaml", "occam"),
    Rule("synthetic/discover.yaml", "discover"),
    Rule("synthetic/report.yaml", "report"),
    Rule("zeroshot/base.yaml", "test", after=("zeroshot/spawrious.yaml",)),
    Rule(
        "zeroshot/models/*.yaml",
        "test",
        before=("zeroshot/base.yaml",),
        after=("zeroshot/spawrious.yaml",),
    ),
    Rule("zeroshot/*.yaml", "test", before=("zeroshot/base.yaml",)),
)

#: the top-level keys that the printed config of each verb holds
VERB_KEYS = {
    "fit": {"model", "data", "trainer"},
    "test": {"model", "data", "trainer"},
    "predict": {"model", "data", "trainer"},
    "segment": {"model", "data", "trainer"},
    "occam": {"model", "data", "trainer"},
    "pipeline": {"views", "seeds", "experiment_dir"},
    "fuse": {"runs", "output_dir"},
    "discover": {"benchmarks", "output_dir"},
    "report": {"fusion_dir", "output_dir"},
    "classify": {"images", "checkpoints", "output_dir"},
}


@pytest.fixture(scope="module", autouse=True)
def shared_parsers() -> Any:
    """Each LightningCLI class builds its parser once in this module (about 0.8 s for ``fit``'s,
    most of a parse); every later ``main([...])`` of that class reuses it. The parse, its checks
    and ``--print_config`` are the command line's own."""
    original = LightningCLI.setup_parser
    built: dict[tuple[type, bool], tuple[Any, Any]] = {}

    def setup_parser(self: LightningCLI, add_subcommands: bool, *args: Any) -> None:
        key = (type(self), add_subcommands)
        if key not in built:
            original(self, add_subcommands, *args)
            built[key] = (self.parser, getattr(self, "_subcommand_method_arguments", None))
        self.parser, methods = built[key]
        if methods is not None:
            self._subcommand_method_arguments = methods

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LightningCLI, "setup_parser", setup_parser)
        yield


def all_configs() -> list[str]:
    """Every YAML file under configs/, as a path relative to it."""
    files = [*CONFIGS.rglob("*.yaml"), *CONFIGS.rglob("*.yml")]
    return sorted(p.relative_to(CONFIGS).as_posix() for p in files)


def rule_of(rel: str) -> Rule | None:
    return next((r for r in RULES if r.matches(rel)), None)


def config_args(files: list[str] | tuple[str, ...]) -> list[str]:
    """``--config`` arguments for paths under configs/ (or under the repository root)."""
    out = []
    for f in files:
        path = REPO / f if f.startswith("configs/") else CONFIGS / f
        out += ["--config", str(path)]
    return out


@cache
def printed(verb: str, files: tuple[str, ...]) -> dict[str, Any]:
    """``python -m occam_l2r VERB --config F ... --print_config``, the printed config as a dict."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main([verb, *config_args(files), "--print_config"])
    assert exit_.value.code in (0, None), f"{verb} {files}: exit status {exit_.value.code}"
    return yaml.safe_load(out.getvalue())


def parse_file(rel: str) -> tuple[Rule, dict[str, Any]]:
    rule = rule_of(rel)
    assert rule is not None, f"configs/{rel} has no verb in RULES"
    return rule, printed(rule.verb, (*rule.before, rel, *rule.after))


def resolve(class_path: str) -> type:
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_every_config_has_a_verb() -> None:
    unknown = [rel for rel in all_configs() if rule_of(rel) is None]
    assert not unknown, (
        f"configs without a verb: {unknown}; register them in RULES of tests/test_configs.py"
    )
    for rule in RULES:  # the configs a rule composes exist
        for f in (*rule.before, *rule.after):
            assert (CONFIGS / f).is_file(), f"{rule.pattern}: configs/{f} does not exist"


@pytest.mark.parametrize("rel", all_configs())
def test_config_parses(rel: str) -> None:
    rule, config = parse_file(rel)
    assert VERB_KEYS[rule.verb] <= set(config), (
        f"{rel}: printed config lacks {VERB_KEYS[rule.verb]}"
    )


def configs_of(verb: str) -> list[str]:
    return [rel for rel in all_configs() if (r := rule_of(rel)) is not None and r.verb == verb]


def dataset_of(config: dict[str, Any]) -> tuple[type, dict[str, Any]]:
    """The dataset class and its arguments of a printed fit config."""
    dataset = config["data"]["init_args"]["dataset"]
    return resolve(dataset["class_path"]), dict(dataset.get("init_args") or {})


@pytest.mark.parametrize("rel", configs_of("pipeline"))
def test_pipeline_views_compose(rel: str) -> None:
    """Every view of a pipeline parses for ``fit`` and trains the view it is named after, on the
    same dataset with the same model settings as the other views."""
    _, pipe = parse_file(rel)
    assert pipe["views"], f"{rel} lists no views"
    common = None
    for name, files in pipe["views"].items():
        files = (files,) if isinstance(files, str) else tuple(files)
        config = printed("fit", files)
        data = config["data"]["init_args"]
        assert name == data["view"] or name.startswith(f"{data['view']}_"), (
            f"{rel}: view {name} trains data.view={data['view']}"
        )
        assert data["view"] == "FULL" or data["segmentation"] is not None, (
            f"{rel}: view {name} has no segmentation"
        )
        shared = (dataset_of(config), config["model"], data["image_size"], data["batch_size"])
        common = common or shared
        assert shared == common, f"{rel}: view {name} differs from the first view in {shared}"


def segment_stores() -> dict[str, tuple[str, dict[str, Any]]]:
    """Store folder -> (segment config, its printed ``data.dataset``) of configs/segment/."""
    stores = {}
    for rel in configs_of("segment"):
        if not rel.startswith("segment/"):
            continue
        config = printed("segment", (rel,))
        dataset = config["data"]["dataset"]
        root = dataset.get("init_args", {}).get("root")
        store = config["model"].get("store") or f"{root}/segmentations/{Path(rel).stem}"
        stores[store] = (rel, dataset)
    return stores


#: dataset arguments that leave the images unchanged, so a store need not share them
#: (ImageNet's clean labels relabel a subset of the val images that are segmented anyway)
SAME_IMAGES = {"ImageNet": ("clean_labels",)}


@pytest.mark.parametrize("rel", [r for r in all_configs() if r.endswith("/data.yaml")])
def test_dataset_overlay_reads_a_segment_store(rel: str) -> None:
    """A dataset overlay's store is the one a segment config writes, of the same dataset."""
    config = printed("fit", (TEMPLATE, rel))
    store = config["data"]["init_args"]["segmentation"]
    if store in (None, "gt"):
        return
    stores = segment_stores()
    assert store in stores, f"{rel}: no config of configs/segment/ writes the store {store}"
    segment_rel, dataset = stores[store]
    ours, theirs = dataset_of(config), (resolve(dataset["class_path"]), dataset["init_args"])
    assert ours[0] is theirs[0], f"{rel} and configs/{segment_rel} read different datasets"
    for args in (ours[1], theirs[1]):
        for name in SAME_IMAGES.get(ours[0].__name__, ()):
            args.pop(name, None)
    assert ours[1] == theirs[1], (
        f"{rel} and configs/{segment_rel} (which writes {store}) read the dataset with "
        f"different arguments: {ours[1]} and {theirs[1]}"
    )


def pipelines() -> dict[str, dict[str, Any]]:
    """experiment_dir -> printed pipeline config, of every pipeline config."""
    return {
        cfg["experiment_dir"]: cfg for cfg in (parse_file(r)[1] for r in configs_of("pipeline"))
    }


@pytest.mark.parametrize("rel", [r for r in configs_of("fuse") if rule_of(r).before == ()])
def test_fusion_config_reads_a_pipeline(rel: str) -> None:
    """A fusion config builds its sweep (the checks of ``SweepConfig``), reads the runs of a
    pipeline config seed by seed, its test splits, and selects on the dataset's headline metric."""
    sweep = run_function(SweepConfig, config_args((rel,)), prog="fuse")
    experiments = {str(Path(run).parents[1]) for runs in sweep.runs.values() for run in runs}
    assert len(experiments) == 1, f"{rel} reads the runs of several experiments: {experiments}"
    exp = experiments.pop()
    pipe = pipelines().get(exp)
    assert pipe is not None, f"{rel}: no pipeline config has experiment_dir {exp}"
    planned: dict[str, list[str]] = {}
    for run in plan_runs(pipe["views"], pipe["seeds"], Path(exp), pipe.get("shared")):
        for view in run.views:
            planned.setdefault(view, []).append(str(run.folder))
    for view, runs in sweep.runs.items():  # views of no pipeline (top-k) follow its layout
        expected = planned.get(view, [f"{exp}/{view}/seed{s}" for s in pipe["seeds"]])
        assert runs == expected, f"{rel}: runs of {view} are not the pipeline's {expected}"
    assert sweep.test_splits == pipe["test_splits"], f"{rel}: test splits differ from {exp}'s"
    if sweep.select_metric is not None:
        first = next(iter(pipe["views"].values()))
        dataset, _ = dataset_of(
            printed("fit", (first,) if isinstance(first, str) else tuple(first))
        )
        assert sweep.select_metric == sweep.summary_metric == dataset.headline_metric, rel


def test_table1_reads_finished_sweeps() -> None:
    """Table 1 across datasets reads the output folders of the other datasets' fusion configs."""
    _, config = parse_file("hard_imagenet/table1.yaml")
    outputs = {parse_file(r)[1]["output_dir"] for r in configs_of("fuse")}
    assert set(config["across_datasets"]["others"].values()) <= outputs


def test_no_config_demands_a_gpu() -> None:
    """``accelerator: auto`` everywhere: on a machine without a GPU a config reaches the
    toolkit's own messages (dataset not found, weights missing) instead of Lightning's
    ``No supported gpu backend found``."""
    demanding = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        trainer = (yaml.safe_load(path.read_text()) or {}).get("trainer") or {}
        if isinstance(trainer, dict) and str(trainer.get("accelerator", "auto")) in ("gpu", "cuda"):
            demanding.append(str(path.relative_to(CONFIGS)))
    assert demanding == []
