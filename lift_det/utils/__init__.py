"""What every part of lift_det and its tools share: the user-mistake exceptions and their
refusal (:mod:`.cli`), where a result was made (:mod:`.provenance`) and the checkout's root."""

import os

from .cli import UserError, faults_in_one_line, refuse, run_main

__all__ = ["REPO", "UserError", "faults_in_one_line", "refuse", "run_main"]

# the checkout lift_det runs from (tools/, configs/, docs/), for the scenarios that run its tools
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
