"""Where a segmentation store lives: the one rule from what a config says to a folder.

Every verb and DataModule that names a store (``data.segmentation``, ``data.mask_sources``,
``discover``'s ``stores``, ``segment``'s ``model.store``, ``classify``'s ``segmentation``) asks
:func:`resolve_store`; :func:`open_store` opens the folder and, when it holds no store, raises one
:class:`~occam_l2r.store.StoreNotFoundError` naming what was written, the folder it means and the
fix; given the dataset root, it also checks that the store was computed on that dataset's files
(:meth:`~occam_l2r.store.SegmentationStore.check_images`, a few files per data file). The rule is written once, in :func:`resolve_store`'s docstring (and in docs/segmentation.md).

Same layer as :mod:`occam_l2r.store` (the stored formats): no torch, no Lightning.
"""

from __future__ import annotations

from pathlib import Path

from occam_l2r.errors import UserError
from occam_l2r.store import SegmentationStore, StoreNotFoundError
from occam_l2r.store_identity import ImageSource

__all__ = [
    "GT_STORE",
    "STORES_DIR",
    "StoreLocationError",
    "is_store_name",
    "not_found_message",
    "open_store",
    "resolve_store",
    "stores_root",
]

#: the folder, under a dataset's root, that holds its stores by name
STORES_DIR = "segmentations"
#: the name of the dataset's ground-truth store (built on first use by
#: :func:`occam_l2r.gt_store.build_gt_store`)
GT_STORE = "gt"
_SEPARATORS = ("/", "\\")


class StoreLocationError(UserError, ValueError):
    """A store name that needs a dataset root where there is none."""


def stores_root(dataset_root: str | Path) -> Path:
    """``<dataset root>/segmentations``: where the stores named by a bare name live."""
    return Path(dataset_root) / STORES_DIR


def is_store_name(spec: str | Path) -> bool:
    """Whether ``spec`` is a bare store name rather than a path (see :func:`resolve_store`)."""
    if isinstance(spec, Path):
        return False
    text = str(spec)
    if not text or text in (".", "..") or text.startswith("~"):
        return False
    return not any(sep in text for sep in _SEPARATORS)


def resolve_store(
    spec: str | Path,
    dataset_root: str | Path | None = None,
    gt_store_dir: str | Path | None = None,
) -> Path:
    """The folder of the segmentation store that a config names.

    **The rule (names vs paths).** A value that contains ``/`` or ``\\``, starts with ``~``, or
    is ``.`` or ``..`` — and any :class:`~pathlib.Path` — is a *path*: the folder as written
    (``~`` expanded; a relative path is taken from the current directory).
    Any other value is a *name*: ``gt`` is the dataset's ground-truth store (``gt_store_dir``
    when it is set, else ``<dataset root>/segmentations/gt``), and any other name is
    ``<dataset root>/segmentations/<name>``, where ``python -m occam_l2r segment --config
    configs/segment/<name>.yaml`` writes its store by default. To mean a folder ``name`` in the
    current directory, write ``./name``.

    Args:
        spec: what the config says: a name or a path.
        dataset_root: the root of the dataset the store belongs to (needed for a name).
        gt_store_dir: where the ``gt`` store lives when not under the dataset root.

    Raises:
        StoreLocationError: ``spec`` is a name and there is no dataset root (and, for ``gt``,
            no ``gt_store_dir``).
    """
    if not is_store_name(spec):
        return Path(spec).expanduser()
    name = str(spec)
    if name == GT_STORE and gt_store_dir:
        return Path(gt_store_dir).expanduser()
    if dataset_root is None:
        raise StoreLocationError(
            f"segmentation store {name!r} is a name (no '/'), which means the folder "
            f"<dataset root>/{STORES_DIR}/{name}, but there is no dataset here; give the store's "
            f"path instead (./{name} for the folder {name} in the current directory)"
        )
    return stores_root(dataset_root) / name


def open_store(
    spec: str | Path,
    dataset_root: str | Path | None = None,
    gt_store_dir: str | Path | None = None,
    source: ImageSource | None = None,
) -> SegmentationStore:
    """The store that ``spec`` names (:func:`resolve_store`), opened for reading and checked
    against the dataset's files (``source``, default the files ``<dataset root>/<image id>``;
    no check without a dataset root).

    Raises:
        StoreNotFoundError: the folder holds no store; the message names ``spec``, the folder
            and how to create the store or what to write instead.
        StoreIdentityError: the store was computed on other files (another dataset, or the
            same ids generated again).
        StoreDamagedError: a data file of the store cannot be read.
        StoreLocationError: as :func:`resolve_store`.
    """
    folder = resolve_store(spec, dataset_root, gt_store_dir)
    try:
        store = SegmentationStore(folder)
    except StoreNotFoundError as err:
        raise StoreNotFoundError(not_found_message(spec, folder)) from err
    if source is None and dataset_root is not None:
        source = ImageSource(Path(dataset_root))
    if source is not None:
        store.check_images(source)
    return store


def not_found_message(spec: str | Path, folder: Path) -> str:
    """The error for a store ``spec`` whose folder ``folder`` holds no ``manifest.json``."""
    text = str(spec)
    if not is_store_name(spec):
        return (
            f"no segmentation store at {text!r} ({folder}: no manifest.json; a value with a '/' "
            "is a path, relative to the current directory). Fix the path, or create the store "
            f"with `python -m occam_l2r segment --config <segment config> --model.store {text}`; "
            f"a bare name (no '/') means <dataset root>/{STORES_DIR}/<name>."
        )
    if text == GT_STORE:
        return (
            f"no ground-truth segmentation store at {folder} (manifest.json missing). It is built "
            "on first use by the DataModules and `discover`, or by `python -m occam_l2r segment "
            "--config configs/segment/synthetic_gt.yaml` (GroundTruth segmenter)."
        )
    return (
        f"no segmentation store named {text!r}: a bare name means {folder}, which has no "
        f"manifest.json. Create it with `python -m occam_l2r segment --config "
        f"configs/segment/{text}.yaml` (a store is named after its config file), or give the "
        f"store's path (a value with a '/'; ./{text} for the folder {text} in the current "
        "directory)."
    )
