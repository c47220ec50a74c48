"""The zero-shot VLM task (L2R² §4.3, §5.2): views of each image, one encoding each, ⊕max fusion.

``python -m occam_l2r test|validate|predict --config configs/synthetic/zeroshot.yaml`` runs an
open_clip model (:mod:`occam_l2r.models.zeroshot`) on the views of a
:class:`~occam_l2r.data.datamodule.ViewDataModule` with ``view: [FULL, FG_C, BG_S]`` (each image
read once, every view encoded once). Its *outputs* are the views and the fused pairs
(``FG_C+FULL``: per sample the prediction of the more confident of FG_C and FULL, L2R²'s ⊕max,
by :func:`occam_l2r.fusion.methods.max_conf`), all from the same pass. A view that fell back to
the FULL image (no detection) is not encoded again: it takes the FULL features.

- Metrics: the base task's collection per split and output, logged as
  ``<split>/<output>/<metric>`` (``test_shift/FG_C+FULL/acc``), and the ``primary`` output's
  (default: the first fused pair) also as ``<split>/<metric>`` (the summary row and the ``val/acc``
  that other tools read). The fallback rate of a fused output is its FG view's.
- ``predict``: one folder of logits files per output, ``<run>/logits/<output>/<split>.npz``
  (fallback flags included), so ``fuse`` runs every fusion method on the VLM logits:
  ``runs: {FULL: [<run>/logits/FULL], FG_C: [<run>/logits/FG_C]}``.
- Label spaces (:mod:`occam_l2r.models.prompts`): ``dataset`` or ``imagenet1k`` (1000 outputs;
  labels become ImageNet indices through ``dataset.imagenet_class_indices``).

No optimiser: ``fit`` is refused.
"""

from __future__ import annotations

from typing import Any

import torch

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.errors import UserError, option_flag
from occam_l2r.fusion.methods import max_conf
from occam_l2r.fusion.pairs import Pair, default_pairs
from occam_l2r.models.prompts import LabelSpace, label_space_classifier, resolve_templates
from occam_l2r.models.zeroshot import DEFAULT_TEMPLATE, ZeroShotClassifier, load_clip
from occam_l2r.tasks.base import _real_rows
from occam_l2r.tasks.zeroshot_base import ZeroShotOutputsTask

#: the default folder of the prototype cache
DEFAULT_CACHE = "~/.cache/occam_l2r/prototypes"
_NO_FIT = (
    "the zero-shot task has nothing to train: run it with validate, test or predict "
    "(python -m occam_l2r test --config configs/synthetic/zeroshot.yaml)"
)


class ZeroShotTask(ZeroShotOutputsTask):
    """Zero-shot classification of several views with max-confidence fusion.

    Args:
        model_name: open_clip model name, preset (``clip-b32``, ``clip-l14``, ``siglip2``,
            ``bioclip``), ``hf-hub:`` id or a registered config (``occam-tiny-convnext``).
        pretrained: pretrained tag or local weights file (an open_clip state dict).
        model_config: an extra open_clip model config (``.json`` file or folder) to register.
        num_classes: the dataset's classes (linked from the DataModule).
        templates: a template with ``{c}``, a list, a named set (``openai_imagenet``,
            ``simple_imagenet``) or a file with one template per line.
        class_names_file: prompt names instead of the dataset's official ones (a ``.json`` list
            or ``{class: name}`` object, or one name per line in class order).
        label_space: ``dataset`` or ``imagenet1k`` (the 1000 ImageNet classes).
        fusions: fused outputs as ``"A+B"`` (⊕max of views A and B; A is the robust one, whose
            fallback flag the output carries). Default: the first FG view with FULL and with
            every BG view.
        primary: the output also logged as ``<split>/<metric>``; default the first fusion (or
            the first view without fusions).
        prototype_cache: folder of the cached class prototypes (``null``: no disk cache).
        logits_dir: where ``predict`` writes; default ``<run dir>/logits``.
    """

    def __init__(
        self,
        model_name: str = "occam-tiny-convnext",
        pretrained: str | None = None,
        model_config: str | None = None,
        num_classes: int = 10,
        templates: str | list[str] = DEFAULT_TEMPLATE,
        class_names_file: str | None = None,
        label_space: LabelSpace = "dataset",
        fusions: list[str] | None = None,
        primary: str | None = None,
        prototype_cache: str | None = DEFAULT_CACHE,
        logits_dir: str | None = None,
    ) -> None:
        super().__init__(num_classes, predictions_dir=logits_dir)
        self.save_hyperparameters(ignore=["logits_dir"])
        self.templates = resolve_templates(templates)
        self.clip = load_clip(model_name, pretrained, model_config)  # missing weights: fail now
        self.zeroshot: ZeroShotClassifier | None = None
        self.views: list[str] = []
        self.fusions: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ setup
    @property
    def outputs(self) -> list[str]:
        """The views, then the fused pairs (``A+B``)."""
        return [*self.views, *(f"{a}+{b}" for a, b in self.fusions)]

    def prediction_outputs(self) -> list[str]:
        """The outputs ``predict`` writes a folder of logits files for."""
        return self.outputs

    @property
    def primary(self) -> str:
        return self.hparams.primary or (
            self.outputs[len(self.views)] if self.fusions else self.views[0]
        )

    no_fit_message = _NO_FIT

    @property
    def datamodule(self) -> ViewDataModule:
        """The trainer's DataModule: a :class:`ViewDataModule` (the views of each image)."""
        return ViewDataModule.of(self.trainer.datamodule, type(self).__name__)

    def setup(self, stage: str) -> None:
        self.refuse_fit(stage)
        dm = self.datamodule
        self.views = [str(v) for v in dm.views]
        self.fusions = self._fusions()
        classes = self.setup_label_space(dm)
        super().setup(stage)
        # the views are resized with the model's own interpolation; open_clip's centre crop
        # keeps the whole shorter side (crop fraction 1)
        dm.use_model_preprocessing(self.clip.interpolation, 1.0)
        self.add_output_metrics(stage)
        if self.zeroshot is None:
            self.zeroshot = label_space_classifier(  # max-mapped spaces: K class logits
                ZeroShotClassifier(
                    self.clip, classes.names, self.templates, self.hparams.prototype_cache
                ),
                classes,
            )

    def _fusions(self) -> list[tuple[str, str]]:
        if self.hparams.fusions is None:
            return [(p.first, p.second) for p in default_pairs(self.views)]  # FG+FULL first
        pairs = []
        for name in self.hparams.fusions:
            try:
                pair = Pair.parse(name)
            except ValueError:
                pair = None
            parts = (pair.first, pair.second) if pair is not None and not pair.ensemble else ()
            if not parts or parts[0] == parts[1] or not set(parts) <= set(self.views):
                raise UserError(
                    f"{option_flag('model', 'fusions')}: {name!r} must be 'A+B' of two different views "
                    f"of {option_flag('data', 'view')} ({self.views})"
                )
            pairs.append((parts[0], parts[1]))
        return pairs

    def _prepare(self) -> None:
        """Build (or read) the class prototypes once, on the model's device, in float32."""
        assert self.zeroshot is not None
        if self.zeroshot._prototypes.numel() == 0:
            self.zeroshot.build_prototypes()
            if self.trainer.is_global_zero:
                how = {"cache": "read from", "computed": "computed, cached in"}
                where = self.zeroshot.cache_path
                print(
                    f"zero-shot: {len(self.zeroshot.class_names)} class prototypes x "
                    f"{len(self.templates)} template(s) "
                    + (f"{how[self.zeroshot.prototype_source]} {where}" if where else "computed")
                )

    # ------------------------------------------------------------------ outputs
    def outputs_of(self, batch: dict[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{output: (logits, fallback flags)}`` of a batch: every view encoded once, the
        fused pairs from those logits."""
        assert self.zeroshot is not None
        images = batch.get("views") or {self.views[0]: batch["image"]}
        flags = batch.get("fallbacks") or {self.views[0]: batch["fallback"]}
        features: dict[str, torch.Tensor] = {}
        if "FULL" in images:
            features["FULL"] = self.zeroshot.encode_images(images["FULL"])
        for view in self.views:
            if view in features:
                continue
            fell = flags[view].bool()
            if "FULL" in features and bool(fell.any()) and images[view].shape[1] == 3:
                f = features["FULL"].clone()  # a fallback view is the FULL image: same features
                if not bool(fell.all()):
                    f[~fell] = self.zeroshot.encode_images(images[view][~fell])
                features[view] = f
            else:
                features[view] = self.zeroshot.encode_images(images[view])
        out = {v: (self.zeroshot.logits(features[v]), flags[v].float()) for v in self.views}
        for a, b in self.fusions:
            za, zb = out[a][0], out[b][0]
            chosen = max_conf(za.detach().cpu().numpy(), zb.detach().cpu().numpy()).chosen
            take_b = torch.from_numpy(chosen).to(za.device).bool().unsqueeze(1)
            out[f"{a}+{b}"] = (torch.where(take_b, zb, za), out[a][1])
        return out

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.outputs_of(batch)[self.primary][0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert self.zeroshot is not None
        return self.zeroshot(images)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, stage: str, batch: dict[str, Any], dataloader_idx: int) -> torch.Tensor:
        split = self.split_names[stage][dataloader_idx]
        outs = self.outputs_of(batch)
        for name, (logits, fallback) in outs.items():
            self.update_metrics(f"{split}/{name}", batch, logits, fallback)
        logits, fallback = outs[self.primary]
        self.update_metrics(split, batch, logits, fallback)
        return logits

    def log_splits(self, stage: str) -> None:
        super().log_splits(stage)
        values = self.output_values(stage)
        self.log_dict(values, add_dataloader_idx=False)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            print(output_table(values, self.split_names[stage], self.outputs))

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        outs = self.outputs_of(batch)
        logits, fallback = outs[self.primary]
        pred = self.prediction({**batch, "fallback": fallback}, logits)
        real = _real_rows(batch, len(logits), logits.device).cpu()
        pred["outputs"] = {n: z.detach().float().cpu()[real] for n, (z, _) in outs.items()}
        pred["fallbacks"] = {n: f.detach().cpu()[real] for n, (_, f) in outs.items()}
        return pred

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        raise UserError(_NO_FIT)


def output_table(values: dict[str, Any], splits: list[str], outputs: list[str]) -> str:
    """Markdown table: one row per output, ``acc / macro_acc`` (%) per split."""
    lines = ["| output | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for output in outputs:
        cells = []
        for split in splits:
            acc, macro = (values.get(f"{split}/{output}/{m}") for m in ("acc", "macro_acc"))
            cells.append(
                "-" if acc is None else f"{100 * float(acc):.2f} / {100 * float(macro):.2f}"
            )
        lines.append(f"| {output} | " + " | ".join(cells) + " |")
    return "acc / macro_acc (%)\n" + "\n".join(lines)
