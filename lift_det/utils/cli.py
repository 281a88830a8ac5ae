"""The one exception family for user mistakes and the one place that turns it into a tool's
refusal: one line on stderr and exit code 2, as a mistyped option is."""

import argparse
import contextlib
from typing import Any, Callable, Iterator, List, NoReturn, Optional

__all__ = ["UserError", "refuse", "refusals", "run_main"]


class UserError(ValueError):
    """A user's mistake (an argument, a config value, a file, a dataset): the tools refuse it in
    one line, without a traceback. :class:`~lift_det.engine.checks.UsageError`,
    :class:`~lift_det.data.validate.DatasetError` and
    :class:`~lift_det.checkpoint.file_io.NotACheckpointError` are its kinds."""


def refuse(parser: argparse.ArgumentParser, error: UserError) -> NoReturn:
    """The one refusal: ``<tool>.py: error: <message>``, one line on stderr, exit code 2 (as
    argparse's ``error``, without the usage: the input was well formed, its value is wrong)."""
    parser.exit(2, f"{parser.prog}: error: {error}\n")


@contextlib.contextmanager
def refusals(parser: argparse.ArgumentParser) -> Iterator[None]:
    """A :class:`UserError` raised inside is refused (:func:`refuse`)."""
    try:
        yield
    except UserError as e:
        refuse(parser, e)


def run_main(
    main: Callable[[argparse.Namespace], Any],
    parser: argparse.ArgumentParser,
    argv: Optional[List[str]] = None,
) -> Any:
    """``main(parser.parse_args(argv))`` under :func:`refusals`."""
    with refusals(parser):
        return main(parser.parse_args(argv))
