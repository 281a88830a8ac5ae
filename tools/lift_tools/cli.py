"""The tools' one convention for bad input: a :class:`Refused` is one line on stderr (argparse's
``error``) and exit code 2, before any work starts, as a mistyped option is."""

import argparse
from typing import Any, Callable

__all__ = ["Refused", "run_main"]


class Refused(ValueError):
    """A bad argument or input that a tool refuses before it does any work."""


def run_main(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser) -> Any:
    """``main(parser.parse_args())``; a :class:`Refused` becomes ``parser.error`` (exit code 2)."""
    try:
        return main(parser.parse_args())
    except Refused as e:
        parser.error(str(e))
