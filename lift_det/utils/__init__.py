"""What every part of lift_det and its tools share: the user-mistake exceptions and their
refusal (:mod:`.cli`), and where a result was made (:mod:`.provenance`)."""

from .cli import UserError, refusals, run_main

__all__ = ["UserError", "refusals", "run_main"]
