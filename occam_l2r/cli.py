"""Command line: ``python -m occam_l2r VERB --config FILE [--config OVERLAY] [--key value ...]``.

One registry of verbs, each ``"module:function"`` taking the arguments after the verb, with one
line saying what it does (:data:`DESCRIPTIONS`: ``python -m occam_l2r`` without a verb lists
them; ``--version`` prints the package's version). The modules live in
:mod:`occam_l2r.commands` (its docstring describes the two mechanisms: Lightning verbs are
``LightningCLI`` subclasses, the others typed functions parsed by jsonargparse).

Every verb prints the toolkit's INFO lines and the same progress bar
(:mod:`occam_l2r.console`). ``fit --model.help ClassifierTask`` (and ``--data.help``) take a
class's short name: the toolkit's tasks and DataModules are imported first, so jsonargparse
resolves it.

Known errors (:data:`KNOWN_ERRORS`: a missing dataset folder, missing weights, a missing or
corrupt logits file, NaN logits, ...) are printed as one message naming the file and the fix,
and ``python -m occam_l2r`` exits with status 3 (:data:`occam_l2r.errors.EXIT_USER_ERROR`).
A config or option the verb's parser refuses (a misspelt key, a value of the wrong type) is
reported the same way, first on stderr, by the verbs' parsers
(:class:`occam_l2r.commands.OneMessageParser`), in-process too.
``--debug`` anywhere on the command line (removed before parsing) or ``OCCAM_L2R_DEBUG=1`` shows
the full traceback instead. Called from Python with an ``argv`` list, :func:`main` lets every
exception propagate (tests and other code see the real exception).
"""

from __future__ import annotations

import contextvars
import importlib
import pkgutil
import sys
from typing import Any

from occam_l2r import __version__
from occam_l2r.errors import (
    EXIT_USER_ERROR,
    UserError,
    debug_enabled,
    disk_full_error,
    format_user_error,
    known_cause,
    pop_debug_flag,
    process_rank,
)
from occam_l2r.logits import LogitsFileError
from occam_l2r.weights import WeightsError

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")

#: errors printed as one message by ``python -m occam_l2r``: the toolkit's base and the errors of
#: the two layers that may not import :mod:`occam_l2r.errors` (logits files, weights)
KNOWN_ERRORS: tuple[type[Exception], ...] = (UserError, LogitsFileError, WeightsError)

#: verb -> "module:function"; the function takes the argv after the verb (list of str).
VERBS: dict[str, str] = {
    **{verb: "occam_l2r.commands.lightning:main" for verb in LIGHTNING_VERBS},
    "segment": "occam_l2r.commands.segment:main",
    "segment-preview": "occam_l2r.commands.preview:main",
    "fuse": "occam_l2r.commands.fuse:main",
    "pipeline": "occam_l2r.commands.pipeline:main",
    "check": "occam_l2r.commands.check:main",
    "discover": "occam_l2r.commands.discover:main",
    "occam": "occam_l2r.commands.occam:main",
    "report": "occam_l2r.commands.report:main",
    "classify": "occam_l2r.commands.classify:main",
    "export": "occam_l2r.commands.export:main",
}


#: verb -> what it does, in one line (listed by ``python -m occam_l2r`` without a verb)
DESCRIPTIONS: dict[str, str] = {
    "fit": "train a model on a dataset's view (a classifier, a fusion head, CLIP); tests the "
    "best checkpoint after",
    "validate": "evaluate a checkpoint on the validation split(s)",
    "test": "evaluate a checkpoint on every test split; writes test_metrics.json",
    "predict": "write the logits of every split with a checkpoint (what fuse reads)",
    "segment": "precompute a segmentation store of a dataset (detector + SAM, SAM automatic, "
    "ground truth); resumes",
    "segment-preview": "draw a segmenter's masks on a few images to check it before a full run",
    "fuse": "every fusion method on every pair of views, over seeds, as tables",
    "pipeline": "L2R² end to end: segment, fit every view and seed, predict, fuse",
    "check": "decode every image a training config uses and list the unreadable ones",
    "discover": "object discovery (OCCAM Table 1): FG-ARI and mBO of segmentation stores",
    "occam": "OCCAM: zero-shot classification of the image with its masks (Table 8)",
    "report": "one self-contained HTML page (report.html) with the figures of a fuse run",
    "classify": "the L2R² decision on new images with trained checkpoints",
    "export": "a trained L2R² system as a portable folder (config.json + safetensors), for "
    "occam_l2r.load",
}

#: the packages whose classes ``--model.help NAME`` / ``--data.help NAME`` resolve by short name
CLASS_PACKAGES = ("occam_l2r.tasks", "occam_l2r.data")


def _usage() -> str:
    return "usage: python -m occam_l2r {" + ",".join(VERBS) + "} --config FILE [--help]"


def _verb_list() -> str:
    """The usage line, then each verb with its one-line description."""
    width = max(map(len, VERBS))
    lines = [
        _usage(),
        "",
        "verbs (`python -m occam_l2r VERB --help` lists a verb's options):",
        *(f"  {verb:<{width}}  {DESCRIPTIONS[verb]}" for verb in VERBS),
        "",
        "  --version  print the version",
        "  --debug    show the full traceback of an error (anywhere on the command line)",
    ]
    return "\n".join(lines)


def import_task_classes(argv: list[str]) -> None:
    """Import the toolkit's tasks and DataModules when ``argv`` asks a class's help
    (``--model.help ClassifierTask``), so that jsonargparse resolves the short name."""
    if not any(arg.split("=")[0].endswith(".help") for arg in argv):
        return
    for package in CLASS_PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__, f"{package}."):
            if not info.ispkg:
                importlib.import_module(info.name)


def main(argv: list[str] | None = None) -> Any:
    """Dispatch ``argv`` to its verb.

    Args:
        argv: the command line after ``python -m occam_l2r``. ``None`` (the command line:
            ``python -m occam_l2r``, the ``occam-l2r`` script) reads ``sys.argv[1:]`` and turns a
            known error, or an error raised from one (jsonargparse re-raises errors of a class's
            ``__init__`` as chained ``ValueError``), into one message on stderr and exit status
            3. A list (calls from Python) lets every exception propagate. ``--debug`` is removed
            in both cases; on the command line it shows the traceback. (Lightning relaunches
            ``python -m occam_l2r`` with the same ``sys.argv`` for the ranks > 0 of DDP.)

    Returns:
        What the verb returns (its CLI object or result), ``None`` for ``--help``.
    """
    args, debug = pop_debug_flag(list(sys.argv[1:] if argv is None else argv))
    if argv is not None or debug or debug_enabled():
        return _dispatch(args)
    try:
        return _dispatch(args)
    except Exception as err:
        known = known_cause(err, KNOWN_ERRORS) or disk_full_error(err)
        if known is None:
            raise
        verb = args[0] if args else None
        print(format_user_error(known, verb, process_rank()), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None


def _dispatch(argv: list[str]) -> Any:
    """Run the verb ``argv[0]`` with the arguments after it."""
    if not argv or argv[0] in ("-h", "--help"):
        print(_verb_list())
        return None
    if argv[0] == "--version":
        print(f"occam_l2r {__version__}")
        return None
    verb = argv[0]
    if verb not in VERBS:
        raise SystemExit(f"unknown verb {verb!r}. {_usage()}")
    from occam_l2r.console import log_to_console  # loads Lightning: not for --version

    log_to_console()
    if verb in LIGHTNING_VERBS:
        import_task_classes(argv)
    module, func = VERBS[verb].split(":")
    fn = getattr(importlib.import_module(module), func)
    # LightningCLI takes the verb; the verb's own context ends its settings with it (the flag
    # spelling of occam_l2r.errors.option_flag)
    args = argv if verb in LIGHTNING_VERBS else argv[1:]
    result = contextvars.copy_context().run(fn, args)
    close_process_group()
    return result


def close_process_group() -> None:
    """End a multi-process (DDP) verb in step: each rank waits for the others, then leaves.

    Without this one rank may exit while another still talks to it through gloo/NCCL; the C++
    side then aborts at interpreter exit (``terminate called without an active exception``,
    status -6) although every result was written.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
