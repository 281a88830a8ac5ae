"""What a load takes from elsewhere than the checkpoint, as the model's own modules report it.

While :class:`~lift_det.checkpoint.AtomicDetectionCheckpointer` loads a state dict, modules that
know where some of their tensors come from say so from their ``load_state_dict`` pre-hooks with
:func:`report_part` (the +LiFT backbone: LiFT from its file, from the checkpoint, or random on
purpose; the pyramid: its stage that ViTDet files lack, ViTDet's stage it does not have). The
checkpointer decides what it refuses and writes its one log line from these parts alone: it knows
no module by name. Outside a lift_det checkpointer's load (upstream's ``DetectionCheckpointer``,
a plain ``load_state_dict``), :func:`report_part` logs what it was told.
"""

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, List

__all__ = ["Part", "collect_parts", "report_part"]

logger = logging.getLogger(__name__)

SOURCES = ("file", "checkpoint", "random", "new", "unused")


@dataclass(frozen=True)
class Part:
    """
    prefix: the state-dict prefix of the part (``backbone.net.lift.``), as the checkpoint names it.
    source: "file" (loaded from ``origin``, not from the checkpoint), "checkpoint" (taken from
        the checkpoint, ``origin`` not used), "random" (left at its initialization on purpose),
        "new" (a part this checkpoint format never has, fine for inference), "unused" (tensors
        of the checkpoint this model has no place for, as expected).
    origin: where a "file" part came from, as the config names it (``lift_weights=<path>``).
    tensors: how many tensors the part has.
    reason: a few words for the log.
    """

    prefix: str
    source: str
    origin: str = ""
    tensors: int = 0
    reason: str = ""

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Part.source must be one of {SOURCES}, got {self.source!r}.")

    def covers(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def describe(self) -> str:
        """A few words for a log line ("" for the parts a summary states otherwise)."""
        name = self.prefix[:-1] if self.prefix.endswith(".") else self.prefix
        if self.source == "file":
            return f"{name} ({self.tensors}): from {self.origin} (the checkpoint has none)"
        if self.source == "checkpoint" and self.origin:
            return f"{name}: from the checkpoint ({self.origin} not used)"
        if self.source == "random":
            return f"{name}: left random ({self.reason})"
        return ""


_ACTIVE: List[List[Part]] = []  # the parts of the loads in progress, innermost last


@contextlib.contextmanager
def collect_parts() -> Iterator[List[Part]]:
    """Collect what :func:`report_part` reports during the ``with`` block."""
    parts: List[Part] = []
    _ACTIVE.append(parts)
    try:
        yield parts
    finally:
        _ACTIVE.remove(parts)


def report_part(prefix: str, source: str, origin: str = "", tensors: int = 0, reason: str = ""):
    """Called by a module's ``load_state_dict`` pre-hook: see :class:`Part`."""
    part = Part(prefix, source, origin, tensors, reason)
    if _ACTIVE:
        _ACTIVE[-1].append(part)
    elif part.describe():
        logger.info(f"Loading: {part.describe()}.")
