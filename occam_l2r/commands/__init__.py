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

A config the parser refuses (a misspelt key, a value of the wrong type) is one message, first
on stderr, exit status 3: :class:`OneMessageParser` (the parser of :func:`run_function`) and
:class:`~occam_l2r.commands.lightning.OneMessageLightningParser` (its subclass for
``LightningCLI(parser_class=...)``) print
``occam_l2r VERB: error: unknown key 'batch_sise' under data (...)`` instead of jsonargparse's
~70 lines of usage followed by the error. ``--debug`` or ``OCCAM_L2R_DEBUG=1`` (or
``JSONARGPARSE_DEBUG``) keeps jsonargparse's own report.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from jsonargparse import ArgumentParser

from occam_l2r.errors import (
    DEBUG_FLAG,
    EXIT_USER_ERROR,
    UserError,
    debug_enabled,
    format_user_error,
    process_rank,
)


class ConfigError(UserError, ValueError):
    """A config file or command-line option that the verb's parser refuses."""


def parse_error_message(message: str, verb: str) -> str:
    """jsonargparse's (multi-line) parse error as one line naming the key, where it is, the fix.

    Args:
        message: the parser's message (``Parser key "data": ... Option 'x' is not accepted``).
        verb: the verb whose ``--help`` lists the accepted keys.
    """
    keys = re.findall(r'Parser key "([^"]+)"', message)
    classes = re.findall(r"Problem with given class_path '([^']+)'", message)
    help_hint = f"`python -m occam_l2r {verb} --help` lists the accepted keys"
    unknown = re.search(r"Option '([^']+)' is not accepted", message) or re.search(
        r"does not accept option '([^']+)'", message
    )
    if unknown:
        where = f" under {' -> '.join(keys)}" if keys else ""
        owner = f" (not an argument of {classes[-1]})" if classes else ""
        return (
            f"unknown key {unknown.group(1)!r}{where}{owner}: fix its spelling in the config or "
            f"on the command line; {help_hint}"
        )
    deepest = list(re.finditer(r'Parser key "[^"]+":\n\s*(.*)', message))
    if deepest and not deepest[-1].group(1).startswith("Does not validate"):
        return f"{' -> '.join(keys)}: {deepest[-1].group(1).strip()}; {help_hint}"
    given = re.search(r"Given value: (.*)", message)
    expected = re.findall(r"Expected a <class '([^']+)'>|Expected a ([^\s<][^\n]*)", message)
    if keys and given:
        types = [a or b for a, b in expected]
        wanted = f" (expected {' or '.join(types)})" if types else ""
        return f"{keys[0]}: invalid value {given.group(1).strip()!r}{wanted}; {help_hint}"
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    return f"{text}; {help_hint}"


class OneMessageParser(ArgumentParser):
    """A jsonargparse parser whose parse errors are one message, first on stderr, exit 3."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Print ``occam_l2r VERB: error: ...`` (no usage block) and exit with status 3."""
        from jsonargparse._common import debug_mode_active

        if not self.exit_on_error or debug_mode_active() or _debug():
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        verb = str(parser.prog).split()[-1] if parser.prog else "occam_l2r"
        err = ConfigError(parse_error_message(message, verb))
        print(format_user_error(err, verb, process_rank()), file=sys.stderr, flush=True)
        self.exit(EXIT_USER_ERROR)


def _debug() -> bool:
    """Whether the user asked for tracebacks (``--debug`` is removed from the argv the parser
    sees, but not from ``sys.argv``)."""
    return debug_enabled() or DEBUG_FLAG in sys.argv[1:]


def run_function(function: Callable[..., Any], argv: list[str] | None, prog: str) -> Any:
    """Parse ``argv`` into the typed arguments of ``function`` and call it.

    Args:
        function: a function (or class) with type hints and a Google-style docstring.
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
        prog: the name shown in ``--help`` (``python -m occam_l2r fuse``).
    """
    from jsonargparse import CLI

    args = list(sys.argv[2:] if argv is None else argv)
    return CLI(function, args=args, as_positional=False, prog=prog, parser_class=OneMessageParser)
