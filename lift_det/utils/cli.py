"""The one exception family for user mistakes and the one place that turns it into a tool's
refusal: one line on stderr (argparse's ``error``) and exit code 2, as a mistyped option is."""

import argparse
import contextlib
from typing import Any, Callable, Iterator, List, Optional

__all__ = ["UserError", "refusals", "run_main"]


class UserError(ValueError):
    """A user's mistake (an argument, a config value, a file, a dataset): the tools refuse it in
    one line, without a traceback. :class:`~lift_det.engine.checks.UsageError`,
    :class:`~lift_det.data.validate.DatasetError` and
    :class:`~lift_det.checkpoint.file_io.NotACheckpointError` are its kinds."""


@contextlib.contextmanager
def refusals(parser: argparse.ArgumentParser) -> Iterator[None]:
    """A :class:`UserError` raised inside becomes ``parser.error`` (``<tool>.py: error: ...``,
    exit code 2)."""
    try:
        yield
    except UserError as e:
        parser.error(str(e))


def run_main(
    main: Callable[[argparse.Namespace], Any],
    parser: argparse.ArgumentParser,
    argv: Optional[List[str]] = None,
) -> Any:
    """``main(parser.parse_args(argv))`` under :func:`refusals`."""
    with refusals(parser):
        return main(parser.parse_args(argv))
