"""The one exception family for user mistakes and the one place that turns it into a tool's
refusal: one line on stderr and exit code 2, as a mistyped option is."""

import argparse
import contextlib
import errno
from typing import Any, Callable, Iterator, List, NoReturn, Optional

# faults of the machine, not of the program: a full disk or quota, a read-only or forbidden folder
ENVIRONMENT_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class UserError(ValueError):
    """A user's mistake (an argument, a config value, a file, a dataset): the tools refuse it in
    one line, without a traceback. :class:`~lift_det.engine.checks.UsageError`,
    :class:`~lift_det.data.validate.DatasetError` and
    :class:`~lift_det.checkpoint.file_io.NotACheckpointError` are its kinds."""


def refuse(parser: argparse.ArgumentParser, error: UserError) -> NoReturn:
    """The one refusal: ``<tool>.py: error: <message>``, one line on stderr, exit code 2 (as
    argparse's ``error``, without the usage: the input was well formed, its value is wrong)."""
    parser.exit(2, f"{parser.prog}: error: {error}\n")


def run_main(
    main: Callable[[argparse.Namespace], Any],
    parser: argparse.ArgumentParser,
    argv: Optional[List[str]] = None,
) -> Any:
    """``main(parser.parse_args(argv))``; a :class:`UserError` raised inside is refused
    (:func:`refuse`)."""
    try:
        return main(parser.parse_args(argv))
    except UserError as e:
        refuse(parser, e)


@contextlib.contextmanager
def faults_in_one_line(prog: str) -> Iterator[None]:
    """A run that diverged (``FloatingPointError``) or met a fault of the machine
    (:data:`ENVIRONMENT_FAULTS`) ends in one line on stderr, ``<prog>: error: ...``, exit code 1;
    the run's log has the traceback. Also a decorator."""
    try:
        yield
    except (FloatingPointError, OSError) as e:
        if isinstance(e, OSError) and e.errno not in ENVIRONMENT_FAULTS:
            raise
        raise SystemExit(f"{prog}: error: {' '.join(str(e).split())}") from None
