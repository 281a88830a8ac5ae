"""What every part of lift_det and its tools share: the user-mistake exceptions and their
refusal (:mod:`.cli`), and where a result was made (:mod:`.provenance`)."""

from .cli import UserError, refuse, refusals, run_main

__all__ = ["UserError", "refuse", "refusals", "run_main"]
