"""Command line: ``python -m occam_l2r VERB --config FILE [--config OVERLAY] [--key value ...]``.

One registry of verbs, each ``"module:function"`` taking the arguments after the verb. The
modules live in :mod:`occam_l2r.commands` (its docstring describes the two mechanisms: Lightning
verbs are ``LightningCLI`` subclasses, the others typed functions parsed by jsonargparse).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")

#: verb -> "module:function"; the function takes the argv after the verb (list of str).
VERBS: dict[str, str] = {
    **{verb: "occam_l2r.commands.lightning:main" for verb in LIGHTNING_VERBS},
    "segment": "occam_l2r.commands.segment:main",
    "segment-preview": "occam_l2r.commands.preview:main",
    "fuse": "occam_l2r.commands.fuse:main",
    "pipeline": "occam_l2r.commands.pipeline:main",
    "check": "occam_l2r.commands.check:main",
}


def _usage() -> str:
    return "usage: python -m occam_l2r {" + ",".join(VERBS) + "} --config FILE [--help]"


def main(argv: list[str] | None = None) -> Any:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to its verb."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return None
    verb = argv[0]
    if verb not in VERBS:
        raise SystemExit(f"unknown verb {verb!r}. {_usage()}")
    module, func = VERBS[verb].split(":")
    fn = getattr(importlib.import_module(module), func)
    if verb in LIGHTNING_VERBS:
        return fn(argv)  # LightningCLI takes the subcommand itself
    return fn(argv[1:])
