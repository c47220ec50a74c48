"""Command line: ``python -m occam_l2r VERB --config FILE``.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI (any LightningModule and
LightningDataModule of the package, chosen by ``class_path`` in the config). The other verbs sit
beside them with the same config conventions; each is a function ``main(argv)`` registered in
:data:`EXTRA_VERBS` as ``"module:function"``.
"""

from __future__ import annotations

import importlib
import sys

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")

#: verb -> "module:function"; the function takes the remaining argv (list of str).
EXTRA_VERBS: dict[str, str] = {
    "segment": "occam_l2r.segment.cli:main",
    "segment-preview": "occam_l2r.segment.preview:main",
    "fuse": "occam_l2r.fusion.ablation:main",
    "pipeline": "occam_l2r.pipeline:main",
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to LightningCLI or an extra verb."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_VERBS:
        module, func = EXTRA_VERBS[argv[0]].split(":")
        getattr(importlib.import_module(module), func)(argv[1:])
        return
    from occam_l2r.lightning_cli import run_lightning_cli

    run_lightning_cli(None if from_command_line else argv)
