"""The verbs of ``python -m occam_l2r VERB``: one module per verb, registered in :mod:`occam_l2r.cli`.

Two mechanisms only, with the same config conventions (``--config FILE`` repeatable, dotted
command-line overrides, ``--print_config``):

- verbs that run a Lightning ``Trainer`` (``fit``/``validate``/``test``/``predict`` in
  :mod:`occam_l2r.commands.lightning`, ``segment``, ``segment-preview``, ``occam``) are
  ``LightningCLI`` subclasses; on the command line they parse the argv after the verb;
- the other verbs (``fuse``, ``pipeline``, ``classify``, ``report``, ...) are typed Python
  callables parsed by :func:`run_function` (jsonargparse reads their type hints and docstrings).

Only :mod:`occam_l2r.cli` hands a verb argv. A verb that runs another calls it with a typed
object, never with an argv list or a config file written for the call: a dataclass config for
the typed verbs (``fuse(SweepConfig(...))``, ``report(ReportConfig(...))``), a parsed config
object for the Lightning verbs (``lightning.parse_config(files, overrides)`` then
``lightning.run("fit", config)``; ``segment.parse_config(files)`` or a dict of the sections, then
``segment.run_segment(config)``), whose fields it sets on the object. ``pipeline`` and
``classify`` work this way; ``tests/test_verb_calls.py`` checks it.
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
