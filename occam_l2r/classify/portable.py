"""The exported L2R² system: a folder in the Hugging Face hub layout, JSON and safetensors only.

``python -m occam_l2r export`` (:mod:`occam_l2r.commands.export`) writes, and
:func:`occam_l2r.load` reads, a folder::

    config.json           what the system is (below); no code, no pickle
    FG_C.safetensors      each view model's plain network: its inference weights only (the
    FULL.safetensors      ``state_dict`` of the task's ``model``; no optimizer, no scheduler)

``config.json`` holds the format and its version (:data:`FORMAT`, :data:`VERSION`), the fused
pair, the fusion method with the parameters ``fuse`` fitted on val (as
:meth:`occam_l2r.fusion.fusers.FusionMethod.params` saves them; rebuilt by ``from_params``), the
§3.1 fallback, each view's network (:class:`~occam_l2r.classify.models.NetSpec` and its file),
the views' settings (``image_size``, ``crop_box``, ...), the class names, the segmenter the
training views were made with (its store manifest's name and config), and where it was exported
from. Reading it builds each network with ``create_classifier`` and loads its safetensors file:
nothing of Lightning is imported, and only ``.json`` and ``.safetensors`` files are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from occam_l2r.classify.models import NetSpec
from occam_l2r.errors import UserError
from occam_l2r.store_files import atomic_write, atomic_write_text

#: ``config.json``'s ``format``: what the folder holds
FORMAT = "occam_l2r.l2r2_system"
#: the version of that format; a folder of another version is refused with how to rebuild it
VERSION = 1
#: the views' settings of :class:`~occam_l2r.classify.config.ClassifyConfig` that an export keeps
VIEW_SETTINGS = ("image_size", "score_threshold", "foreground", "fill", "crop_box", "fg_aspect")
#: how to write a folder again
REBUILD = (
    "export it again from its run with `python -m occam_l2r export --run RUN --output_dir DIR`"
)


class ExportError(UserError, ValueError):
    """An export folder that cannot be read (missing, foreign, of another version)."""


@dataclass
class Exported:
    """What an export folder holds (``config.json``; the weights are read by :func:`weights`).

    Attributes:
        folder: the folder.
        pair: the fused views, input 1 first.
        method, seed, params: the fitted fusion (``fuse``'s record).
        fallback, fallback_view: the §3.1 fallback.
        nets: view -> its network's spec; its weights are ``<view>.safetensors``.
        settings: the views' settings (:data:`VIEW_SETTINGS`).
        class_names: the classes in index order (``None``: unnamed).
        segmenter: the segmenter of the training views (store manifest's ``segmenter`` and
            ``config``), ``None`` when unknown.
        source: where it was exported from (provenance only).
    """

    folder: Path
    pair: tuple[str, str]
    method: str
    seed: int
    params: dict[str, Any]
    fallback: str
    fallback_view: str
    nets: dict[str, NetSpec]
    settings: dict[str, Any]
    class_names: list[str] | None = None
    segmenter: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def weights(self, view: str) -> dict[str, torch.Tensor]:
        """The inference weights of ``view``'s network (its safetensors file)."""
        path = self.folder / weights_name(view)
        if not path.is_file():
            raise ExportError(f"{path} is missing from the export {self.folder}; {REBUILD}")
        try:
            return load_file(path)
        except Exception as err:  # safetensors reports a damaged file in several ways
            raise ExportError(f"{path} cannot be read as safetensors ({err}); {REBUILD}") from err


def weights_name(view: str) -> str:
    """The file of a view's weights in an export folder."""
    return f"{view}.safetensors"


def write_export(
    folder: str | Path, system: Exported, weights: dict[str, dict[str, torch.Tensor]]
) -> list[Path]:
    """Write ``system`` and each view's ``weights`` into ``folder`` (each file atomically).

    Returns:
        The files written (``config.json`` last).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for view, state in weights.items():
        spec = system.nets[view].as_dict()
        meta = {"format": "pt", "view": view, **{k: str(v) for k, v in spec.items()}}
        written.append(
            atomic_write(out / weights_name(view), lambda p, s=state, m=meta: save_file(s, p, m))
        )
    config = {
        "format": FORMAT,
        "version": VERSION,
        "library_name": "occam_l2r",
        "pair": list(system.pair),
        "fusion": {"method": system.method, "seed": system.seed, "params": system.params},
        "fallback": {"mode": system.fallback, "view": system.fallback_view},
        "views": {
            v: {**spec.as_dict(), "weights": weights_name(v)} for v, spec in system.nets.items()
        },
        "view_settings": system.settings,
        "class_names": system.class_names,
        "segmenter": system.segmenter,
        "source": system.source,
    }
    text = json.dumps(config, indent=2, default=_plain)
    atomic_write_text(text, out / "config.json")
    return [*written, out / "config.json"]


def read_export(folder: str | Path) -> Exported:
    """The system of an export folder (``config.json``), checked.

    Raises:
        ExportError: no ``config.json``, not JSON, another format, or another version.
    """
    folder = Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise ExportError(
            f"{folder} holds no config.json: give the folder `python -m occam_l2r export` wrote, "
            "or a pipeline / fuse output folder"
        )
    try:
        cfg = json.loads(path.read_text())
    except ValueError as err:
        raise ExportError(f"{path} is not JSON ({err}); {REBUILD}") from err
    found = cfg.get("format") if isinstance(cfg, dict) else None
    if found != FORMAT:
        raise ExportError(
            f"{path} is not an occam_l2r export (format {found!r}, expected {FORMAT!r})"
        )
    if cfg.get("version") != VERSION:
        raise ExportError(
            f"{path} is an export of format version {cfg.get('version')}; this occam_l2r reads "
            f"version {VERSION}: {REBUILD}"
        )
    try:
        return Exported(
            folder=folder, pair=(cfg["pair"][0], cfg["pair"][1]),
            method=cfg["fusion"]["method"], seed=int(cfg["fusion"]["seed"]),
            params=dict(cfg["fusion"]["params"]), fallback=cfg["fallback"]["mode"],
            fallback_view=cfg["fallback"]["view"],
            nets={v: NetSpec(str(s["model_name"]), int(s["num_classes"]))
                  for v, s in cfg["views"].items()},
            settings=dict(cfg["view_settings"]), class_names=cfg.get("class_names"),
            segmenter=cfg.get("segmenter"), source=cfg.get("source") or {},
        )  # fmt: skip
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise ExportError(f"{path} lacks or mangles {err}; {REBUILD}") from err


def _plain(value: Any) -> Any:
    """JSON for the numpy values a fitted parameter may hold (class-wise temperatures)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
