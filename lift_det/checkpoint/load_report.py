"""What a load takes from elsewhere than the checkpoint, as the model's own modules report it
(:func:`report_part`, from their ``load_state_dict`` pre-hooks): the checkpointer decides what it
refuses and writes its log line from these parts alone. Outside a lift_det checkpointer's load,
:func:`report_part` logs what it was told."""

import contextlib
import itertools
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Set

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """A part of a load: its state-dict ``prefix`` (``backbone.net.lift.``) and ``source``: "file"
    (from ``origin``, e.g. ``lift_weights=<path>``), "checkpoint" (``origin`` not used), "random"
    (on purpose), "new" (a part this checkpoint format never has), "unused" (checkpoint tensors with
    no place here, as expected); ``tensors`` counts them, ``reason`` is for the log."""

    prefix: str
    source: str
    origin: str = ""
    tensors: int = 0
    reason: str = ""

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


def group_keys(keys: Iterable[str], universe: Iterable[str]) -> Dict[str, int]:
    """Group ``keys`` by module prefix: the shortest prefix under which every key of ``universe``
    is in ``keys`` (e.g. all of ``backbone.net.lift``), made as deep as it stays the same group
    (``backbone.net``, not ``backbone``, if the backbone is only its net): {prefix: count}."""
    keys = set(keys)
    n_all, n_sel = Counter(), Counter()
    for k in set(universe) | keys:
        parts = k.split(".")
        for i in range(1, len(parts) + 1):
            n_all[".".join(parts[:i])] += 1
            n_sel[".".join(parts[:i])] += k in keys
    groups = Counter()
    for k in keys:
        prefixes = list(itertools.accumulate(k.split("."), lambda a, b: f"{a}.{b}"))
        i = next(i for i, p in enumerate(prefixes) if n_all[p] == n_sel[p])
        while i + 2 < len(prefixes) and n_sel[prefixes[i + 1]] == n_sel[prefixes[i]]:
            i += 1
        groups[prefixes[i]] += 1
    return dict(sorted(groups.items()))


def format_groups(groups: Dict[str, int]) -> str:
    return ", ".join(f"{p} ({n})" for p, n in groups.items())


def describe_keys(keys: Iterable[str], missing: Set[str], shapes: Dict[str, Any], only=None) -> str:
    """What did not fit, by module prefix of ``keys`` (the model's): not in the file, misshaped."""
    shapes = {k: v for k, v in shapes.items() if only is None or k in only}
    out = []
    if missing:
        out.append(f"not in the file: {format_groups(group_keys(missing, keys))}")
    if shapes:
        k, (a, b) = next(iter(shapes.items()))
        out.append(
            f"another shape: {format_groups(group_keys(shapes, keys))}, e.g. {k} {tuple(a)} in "
            f"the file vs {tuple(b)} in the model"
        )
    return "; ".join(out) or "nothing"


def summary_line(r: Dict[str, Any]) -> str:
    """The checkpointer's one log line for a load: what loaded, what is new, mis-shaped or unused
    (by module prefix), and what the model's parts reported (:class:`Part`)."""
    line = f"Loaded {r['n_loaded']}/{r['n_model']} tensors of the model from {r['path']}"
    if r["missing"]:
        line += f"; new (not in the file, keep their init): {format_groups(r['missing'])}"
    if r["shapes"]:
        line += f"; NOT loaded, another shape in the file: {format_groups(r['shapes'])}"
    if r["unused"]:
        line += f"; unused (not in this model): {format_groups(r['unused'])}"
    if r["zero_rel_pos"]:
        line += (
            f"; {r['zero_rel_pos']} relative-position tables not in the file stay zero "
            f"(no relative-position bias, as in MAE)"
        )
    parts = r["parts"]
    expected = [p for p in parts if p.source in ("new", "unused") and p.reason]
    if expected and (r["missing"] or r["unused"]) and not r["shapes"]:
        covered = [g + "." for g in list(r["missing"]) + list(r["unused"])]
        if all(any(p.covers(g) for p in parts) for g in covered):
            line += " (as expected: " + "; ".join(p.reason for p in expected) + ")"
    line += "".join(f"; {p.describe()}" for p in parts if p.describe())
    return line


def really_missing(model, missing_keys: Iterable[str]) -> Set[str]:
    """``missing_keys`` less the names of tensors that were loaded under another name (a tensor
    shared by two modules appears under both in the state dict). Public torch API only:
    ``state_dict(keep_vars=True)`` holds each name, the same tensor object for aliases."""
    missing = set(missing_keys)
    names = defaultdict(set)
    for name, tensor in model.state_dict(keep_vars=True).items():
        names[id(tensor)].add(name)
    for aliases in names.values():
        if aliases & missing and not aliases <= missing:
            missing -= aliases
    return missing
