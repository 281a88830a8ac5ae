"""``make study-check`` (tools/study_check.py): a probe's steps against a trace's, their losses
compared bit for bit, the result recorded per machine class and listed in the README."""

import glob
import itertools
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ..checkpoint import atomic_write_text
from ..utils import REPO
from ..utils.cli import UserError
from ..utils.provenance import VERSIONS, class_name, versions
from ..utils.tables import md_table
from .probe import compare_losses, describe, probe_steps, trace_budgets


def check_steps(trace: str, expected: Dict, where: str) -> None:
    """Refuses a trace whose probe steps are not this checkout's (:func:`describe`)."""
    steps = probe_steps(where, expected["iters"], *trace_budgets(expected))
    here = [describe(s, where) for s in steps]
    there = [{k: v for k, v in s.items() if k != "losses"} for s in expected["steps"]]
    if here != there:
        diff = next(_difference(a, b) for a, b in itertools.zip_longest(there, here) if a != b)
        raise UserError(
            f"{trace} records other probe steps than this checkout's ({diff}): "
            f"`make study` writes a trace for this checkout"
        )


def compare_steps(expected: Dict, got: Dict) -> Tuple[bool, List[Dict[str, Any]]]:
    """Each step's losses against the trace's, printed: (all identical, a result per step)."""
    identical, results = True, []
    keys = ("identical", "first_iter", "first_rel", "max_abs", "max_rel")
    for step, mine in zip(expected["steps"], got["steps"]):
        c = compare_losses(step["losses"], mine["losses"])
        results.append({"name": step["name"], **{k: c[k] for k in keys}})
        if c["identical"]:
            print(f"  {step['name']}: identical bit for bit ({len(step['losses'])} iterations)")
            continue
        identical = False
        it, name = c["at"] or ("-", "-")
        print(
            f"  {step['name']}: DIFFERS from iteration {c['first_iter']} ({c['first']}; "
            f"{c['first_rel']:.3g} relative); largest difference {c['max_abs']:.3g} absolute "
            f"({name} at iteration {it}), {c['max_rel']:.3g} relative"
        )
    return identical, results


def earlier_record(folder: str, expected: Dict, got: Dict) -> Optional[Dict]:
    """This machine class's record in ``folder``, when the class is not the trace's."""
    path = record_path(folder, got) if folder else ""
    if not path or class_name(got) == class_name(expected) or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _difference(there: Optional[Dict], here: Optional[Dict]) -> str:
    """The first difference between a recorded step and this checkout's (:func:`describe`)."""
    if there is None or here is None:
        return f"step {(there or here)['name']} only {'there' if here is None else 'here'}"
    for k in ("name", "config", "threads", "max_iter"):
        if there[k] != here[k]:
            return f"{there['name']}: {k} {there[k]} there, {here[k]} here"
    old, new = there["overrides"], here["overrides"]
    key = next(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
    return f"{there['name']}: {key}={old.get(key, '(none)')} there, ={new.get(key, '(none)')} here"


def record_path(folder: str, got: Dict) -> str:
    """``folder/<machine class>.json`` (:func:`class_name`; this run's provenance has a class)."""
    return os.path.join(folder, f"{class_name(got)}.json")


def record(folder: str, expected: Dict, got: Dict, steps: List[Dict], wall_s: float = 0) -> str:
    """Writes the check's result to :func:`record_path` (a rerun of the same machine class
    replaces it, no other class's; tools/update_readme.py lists them); returns the path."""
    path, made = record_path(folder, got), ("date", "commit", "machine", *VERSIONS, "cpu_class")
    result = {k: got.get(k) for k in made}
    identical = all(s["identical"] for s in steps)
    result.update(command=got["command"], wall_s=wall_s, identical=identical)
    result.update(iters=expected["iters"], trace={k: expected.get(k) for k in made}, steps=steps)
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return path


STUDY_CHECKS_NONE = (
    "No machine has run `make study-check` against the committed trace yet (it writes "
    "`docs/study_checks/<machine>-torch-<version>.json`; then run `tools/update_readme.py`)."
)


def render_study_checks(folder: str) -> str:
    """The machines that ran ``make study-check`` (docs/study_checks/*.json) and what they found,
    or a line saying there is none."""
    rows = []
    for path in sorted(glob.glob(os.path.join(REPO, folder, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        if r["identical"]:
            result = f"identical bit for bit ({r['iters']} iterations per step)"
        else:
            worst = max(r["steps"], key=lambda s: s["max_rel"])
            result = (
                f"differs: {worst['name']} from iteration {worst['first_iter']}, largest "
                f"relative difference {worst['max_rel']:.2g}"
            )
        others = versions(r, [k for k in VERSIONS if k != "torch"])  # older records: none
        stack = f"{r['torch']}, {others}" if others else r["torch"]
        c = r.get("cpu_class")  # older records: the machine's name only
        cls = "{vendor} family {family} model {model}, {capability}".format(**c) if c else "-"
        wall = f"{r['wall_s']:.0f}" if r.get("wall_s") else "-"
        commits = f"`{r['commit']}`", f"`{r['trace']['commit']}`"
        rows.append([r["machine"], cls, r["date"], commits[0], stack, commits[1], result, wall])
    if not rows:
        return STUDY_CHECKS_NONE + "\n"
    head = ["machine", "CPU class (torch's kernels)", "date", "commit"]
    head += ["torch (numpy, Pillow, Python)", "trace's commit", "result", "time (s)"]
    return "\n".join(md_table(head, rows)) + "\n"
