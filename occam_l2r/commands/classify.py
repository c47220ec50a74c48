"""The ``classify`` verb: the L2R² decision on new images (issue 11, parts 1 and 2).

``python -m occam_l2r classify --config configs/synthetic/classify.yaml [--preview] [--cascade]``
(the two switches alone mean ``true``) reads a :class:`~occam_l2r.classify.config.ClassifyConfig` (top-level keys
``images:``, ``output_dir:``, ``checkpoints:``, ``fusion_dir:``, ...) and writes one row per image
to ``<output_dir>/predictions.csv`` (and ``.parquet``), with ``summary.json`` (docs/classify.md).
Other code calls :func:`classify` with a ``ClassifyConfig``.

With ``segment_config:`` the images are segmented first (:func:`segment_images`): the ``segment``
verb (:func:`~occam_l2r.commands.segment.run_segment`, called with the config object that
:func:`segment_run_config` builds) runs that config's segmenter and trainer over
:class:`~occam_l2r.data.datasets.image_files.ImageFiles` of ``images`` into
``<output_dir>/segmentations`` (a rerun resumes; the config that ran is recorded in
``<output_dir>/segment.yaml``), and the images are classified with that store as
``segmentation``. The segmenter runs here, in the command layer, because
:mod:`occam_l2r.classify` may not import the verbs.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.engine import ClassifyConfigError
from occam_l2r.classify.run import classify as classify_with_store
from occam_l2r.commands import run_function
from occam_l2r.store import atomic_write_text
from occam_l2r.store_location import resolve_store

__all__ = ["ClassifyConfig", "classify", "main", "segment_images", "segment_run_config"]

#: the dataset a ``segment_config`` run segments: the images of the classify config
IMAGE_FILES = "occam_l2r.data.datasets.image_files.ImageFiles"
#: ``data:`` keys of a segment config that name the replaced dataset's splits: dropped
DATASET_KEYS = ("splits", "limit")

#: options that may be given alone on the command line (``--preview`` = ``--preview true``)
SWITCHES = ("--preview", "--cascade")


def with_switch_values(argv: list[str]) -> list[str]:
    """``argv`` with a bare :data:`SWITCHES` option followed by ``true``."""
    out: list[str] = []
    for k, arg in enumerate(argv):
        out.append(arg)
        nxt = argv[k + 1] if k + 1 < len(argv) else None
        if arg in SWITCHES and (nxt is None or nxt.startswith("--")):
            out.append("true")
    return out


def segment_run_config(config: ClassifyConfig) -> dict[str, Any]:
    """The ``segment`` config that segments ``config.images``: ``config.segment_config`` with
    ``data.dataset`` replaced by ``ImageFiles`` over ``images`` (with ``class_names``),
    ``data.splits`` / ``data.limit`` dropped and ``model.store`` set to
    ``<output_dir>/segmentations`` (absolute paths); its other sections are kept as written.

    Raises:
        ClassifyConfigError: ``segmentation`` is given too, or the file is missing, not YAML or
            has no ``model:`` section.
    """
    source = Path(str(config.segment_config))
    if config.segmentation is not None:
        raise ClassifyConfigError(
            f"both `segmentation: {config.segmentation}` and `segment_config: {source}` are "
            "given: keep `segmentation` to read a stored segmentation, or `segment_config` to "
            "segment the images in this run (into <output_dir>/segmentations), not both"
        )
    if not source.is_file():
        raise ClassifyConfigError(
            f"segment_config {source} not found: give a `python -m occam_l2r segment` config "
            "file (e.g. configs/segment/synthetic_gdino_sam.yaml)"
        )
    try:
        cfg = yaml.safe_load(source.read_text())
    except yaml.YAMLError as err:
        raise ClassifyConfigError(f"segment_config {source} is not valid YAML ({err})") from err
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise ClassifyConfigError(
            f"segment_config {source} has no `model:` section (the segmenter); give a "
            "`python -m occam_l2r segment` config"
        )
    data = {k: v for k, v in (cfg.get("data") or {}).items() if k not in DATASET_KEYS}
    images: dict[str, Any] = {"images": str(Path(config.images).absolute())}
    if config.class_names is not None:
        images["class_names"] = list(config.class_names)
    data["dataset"] = {"class_path": IMAGE_FILES, "init_args": images}
    store = Path(config.output_dir).absolute() / "segmentations"
    return {**cfg, "model": {**cfg["model"], "store": str(store)}, "data": data}


def segment_images(config: ClassifyConfig) -> Path | None:
    """Segment ``config.images`` with ``config.segment_config``'s segmenter (the ``segment``
    verb, resumable: images already stored are skipped; an unreadable image is listed in the
    store's failures, not an error). Records the config that runs in
    ``<output_dir>/segment.yaml``.

    Returns:
        The store, ``<output_dir>/segmentations``; ``None`` on the ranks > 0 of a multi-process
        trainer (only rank 0 goes on to classify).
    """
    from occam_l2r.cli import close_process_group
    from occam_l2r.commands.segment import run_segment

    run_config = segment_run_config(config)
    record = Path(config.output_dir) / "segment.yaml"
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(yaml.safe_dump(run_config, sort_keys=False), record)
    summary = run_segment(run_config)
    close_process_group()  # every rank has segmented; rank 0 classifies alone
    return None if summary is None else resolve_store(run_config["model"]["store"])


def classify(config: ClassifyConfig) -> dict[str, Any] | None:
    """Classify the images of ``config`` (:func:`occam_l2r.classify.run.classify`), segmenting
    them first with ``segment_config`` when it is given (:func:`segment_images`).

    Returns:
        The run's summary with ``table``, ``files`` and ``result``; ``None`` on the ranks > 0 of a
        multi-process segmentation.
    """
    if config.segment_config is None:
        return classify_with_store(config)
    store = segment_images(config)
    if store is None:
        return None
    return classify_with_store(replace(config, segmentation=str(store), segment_config=None))


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """``python -m occam_l2r classify --config FILE`` (``--print_config`` and ``--help`` work).

    Prints ``classify: N images (E errors), second model on S%, <csv> (T s)``.

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    args = with_switch_values(list(sys.argv[2:] if argv is None else argv))
    config = run_function(ClassifyConfig, args, prog="python -m occam_l2r classify")
    out = classify(config)
    if out is None:  # a rank > 0 of a multi-process segmentation
        return None
    print(
        f"classify: {out['images']} images ({out['errors']} errors, {out['fallbacks']} fell back "
        f"to {config.fallback_view}), second model on {100 * out['second_model_share']:.1f}% "
        f"{'(cascade)' if config.cascade else '(full fusion)'}, {out['files'][0]} "
        f"({out['seconds']:.1f} s)",
        flush=True,
    )
    return out
