"""The Python API: ``occam_l2r.load(path)``, a trained L2R² system as one callable object.

``load`` reads

- an export folder (``python -m occam_l2r export``: ``config.json`` + ``<view>.safetensors``,
  :mod:`occam_l2r.classify.portable`) with no Lightning import;
- a ``pipeline`` experiment folder or a ``fuse`` output folder (the runs ``fuse`` recorded; their
  Lightning checkpoints are read through the toolkit's checkpoint loader);
- a Hugging Face hub repository id (``owner/name``) holding an export: the files come from the
  local hub cache (offline with ``HF_HUB_OFFLINE=1``) or the hub, ``.json`` and ``.safetensors``
  only.

It returns a :class:`~occam_l2r.classify.system.System`; calling it on PIL images (or a tensor
batch, arrays, files) runs the ``classify`` engine and returns its table (fused class,
confidence, each view's top-k, the deciding view, the fallback reason) and each view's logits.
OCCAM on one image is :meth:`occam_l2r.occam.model.Occam.predict`; docs/python_api.md shows both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occam_l2r.classify.system import Predictions, System
from occam_l2r.errors import UserError

__all__ = ["Predictions", "System", "load"]


class LoadError(UserError, FileNotFoundError):
    """``load`` was given a path that is no folder and no hub repository it can read."""


def load(path: str | Path, **settings: Any) -> System:
    """A trained L2R² system, ready to classify images.

    Args:
        path: an export folder, a ``pipeline`` or ``fuse`` output folder, or a hub repository id
            holding an export.
        settings: for a pipeline / fuse folder, the cell (``pair``, ``method``, ``seed``); for
            any, :class:`~occam_l2r.classify.config.ClassifyConfig` fields (``device``,
            ``batch_size``, ``cascade``, ``top_k``, ...).
    """
    folder = Path(path).expanduser()
    if folder.is_dir():
        if (folder / "config.json").is_file():
            return System.from_export(folder, **settings)
        return System.from_run(folder, **settings)
    return System.from_export(hub_folder(str(path)), **settings)


def hub_folder(repo_id: str) -> Path:
    """The local copy of a hub repository's export (its ``.json`` and ``.safetensors`` files)."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise LoadError(
            f"{repo_id} is not a folder: give an export folder, a pipeline / fuse output folder "
            "or a Hugging Face hub repository id (owner/name)"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as err:  # offline without a cached copy, unknown repository, network
        raise LoadError(
            f"{repo_id} is not a local folder and could not be read from the Hugging Face hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); give the "
            "export folder's path"
        ) from err
