"""The verbs of ``python -m occam_l2r VERB``: one module per verb, registered in :mod:`occam_l2r.cli`.

Two mechanisms only, with the same config conventions (``--config FILE`` repeatable, dotted
command-line overrides, ``--print_config``):

- verbs that run a Lightning ``Trainer`` (``fit``/``validate``/``test``/``predict`` in
  :mod:`occam_l2r.commands.lightning`, ``segment``) are ``LightningCLI`` subclasses called with
  ``args=[...]``;
- the other verbs (``fuse``, ``pipeline``, ``segment-preview``) are typed Python callables parsed by
  :func:`run_function` (jsonargparse reads their type hints and docstrings).

A verb never drives another through argv strings or ``sys.argv``: it calls the other's classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_function(function: Callable[..., Any], argv: list[str] | None, prog: str) -> Any:
    """Parse ``argv`` into the typed arguments of ``function`` and call it.

    Args:
        function: a function (or class) with type hints and a Google-style docstring.
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
        prog: the name shown in ``--help`` (``python -m occam_l2r fuse``).
    """
    import sys

    from jsonargparse import CLI

    args = list(sys.argv[2:] if argv is None else argv)
    return CLI(function, args=args, as_positional=False, prog=prog)
