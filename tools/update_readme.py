#!/usr/bin/env python3
"""
Copy the committed, tool-written results into the README and its pages (``PAGES``: README.md and
docs/[A-Z]*.md): every block between
``<!-- generated: docs/X.md -->`` and ``<!-- /generated -->`` gets the content of docs/X.md, and,
when docs/X.json has them, a line with the date, commit, machine, torch version and command.

A block naming a folder gets the GPU check's tables (``docs/gpu/``, --toy reports left out) or the
machines that ran `make study-check` (``docs/study_checks/``). --check: exit 1 if a page is stale.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import argparse
import glob
import json
import os
import re
import sys

from lift_det.checkpoint import atomic_write_text
from lift_det.study.check import render_study_checks
from lift_det.study.report import format_headline
from lift_det.utils import REPO
from lift_det.utils.tables import md_table

# the documentation a user reads: the README and the pages it links (the reports in docs/ that the
# tools write are lower case)
DOC_PAGES = glob.glob(os.path.join(REPO, "docs", "[A-Z]*.md"))
PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in DOC_PAGES)
BLOCK = re.compile(r"(<!-- generated: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)
PROVENANCE = ("date", "commit", "machine", "torch", "command")


GPU_PENDING = (
    "GPU figures are pending: no report in `docs/gpu/` yet (run `make gpu-check` on "
    "a CUDA machine, then `tools/update_readme.py`)."
)


def _row(rows, **match):
    """The first row whose fields equal ``match`` (None if none)."""
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _with_spread(ratio, rows, shared) -> str:
    """A time ratio between the two inference rows that agree on ``shared``, with the larger of
    their A/B spreads: a ratio closer to 1 than that is noise (tools/gpu_check.py times each row
    twice)."""
    if ratio is None:
        return "n/a"
    spreads = [x["spread"] for x in rows if all(x[k] == ratio[k] for k in shared) and "spread" in x]
    spread = f" (spread {max(spreads) * 100:.0f}%)" if spreads else ""
    return f"{ratio['ratio']:.3f}{spread}"


RATIOS = ("+LiFT / plain time", "sdpa / eager time")  # tools/gpu_check.py's inference ratios


def gpu_tables(reports) -> str:
    """The README's GPU tables from the GPU check's JSON reports (tools/gpu_check.py)."""
    cost, memory, made = [], [], []
    for r in reports:
        # a section that failed is absent from its report (listed in "failed"): n/a here
        inf = r.get("inference", dict(rows=[], ratios={}))
        s1 = r.get("stage_one", dict(schedule_epochs=None))
        lift_model = inf["rows"][-1]["model"] if inf["rows"] else None  # plain first, +LiFT last
        at = dict(batch=1, precision="amp")
        setting = ("part", "batch", "attn_impl", "precision")  # what +LiFT and plain rows share
        lift_ratios, sdpa_ratios = (inf["ratios"].get(k, []) for k in RATIOS)
        lift = _row(lift_ratios, part="detector", attn_impl="eager", **at)
        backbone = _row(lift_ratios, part="backbone", attn_impl="eager", **at)
        sdpa = _row(sdpa_ratios, model=lift_model, part="detector", **at)
        epoch, schedule = s1.get("epoch_s"), s1.get("schedule_s")
        failed = "".join(f"; {f['section']} failed" for f in r.get("failed", []))
        cost.append(
            [
                r["device"],
                _with_spread(lift, inf["rows"], setting),
                _with_spread(backbone, inf["rows"], setting),
                _with_spread(sdpa, inf["rows"], ("model", "part", "batch", "precision")),
                _fmt(s1.get("images_per_s"), ".1f"),
                _fmt(epoch and epoch / 3600, ".2f"),
                f"{_fmt(schedule and schedule / 86400, '.1f')} "
                f"({_fmt(s1['schedule_epochs'], '.0f')} ep)",
                f"{r['wall_s']:.0f}",
                f"`docs/gpu/{r['device_slug']}.md`{failed}",
            ]
        )
        rows = []
        if "config" in s1:
            rows = [dict(s1, model=f"stage one, `{s1['config']}`", batch=s1["batch_per_gpu"])]
        stage_two = r.get("stage_two", dict(rows=[]))["rows"]
        rows += [dict(x, model=f"stage two, `{x['config']}`") for x in stage_two]
        for x in rows:
            peak = "out of memory" if x.get("oom") else f"{x['peak_memory_MiB']:.0f}"
            memory.append([r["device"], x["model"], x["batch"], peak])
        made.append(
            f"*{r['device']}: made {r['date']} at commit `{r['commit']}`, torch "
            f"{r['torch']}, CUDA {r['cuda']}: `{r['command']}`.*"
        )
    head = [
        "GPU",
        "inference +LiFT / plain (AMP, batch 1)",
        "backbone alone +LiFT / plain (AMP, batch 1)",
        "SDPA / eager (+LiFT, AMP, batch 1)",
        "stage one images/s",
        "one COCO epoch (h)",
        "stage one schedule (days)",
        "check wall time (s)",
        "report",
    ]
    memory_head = ["GPU", "training (AMP)", "batch per GPU", "peak memory (MiB)"]
    lines = md_table(head, cost, "lrrrrrrrl") + [""] + md_table(memory_head, memory, "llrr")
    return "\n".join([*lines, "", *made])


def render_gpu_reports(folder: str) -> str:
    """The GPU check's reports in ``folder`` (relative to the repo) as tables, or the pending
    line when there is none (``--toy`` reports do not count)."""
    reports = []
    for path in sorted(glob.glob(os.path.join(REPO, folder, "*.json"))):
        with open(path) as f:
            report = json.load(f)
        if not report.get("toy", True):
            reports.append(report)
    return (gpu_tables(reports) if reports else GPU_PENDING) + "\n"


def render(path: str) -> str:
    """The README text for the generated file ``path`` (relative to the repo); a folder (ending
    in "/") holds GPU check reports (docs/gpu/) or study checks (docs/study_checks/)."""
    if path.rstrip("/").endswith("study_checks"):
        return render_study_checks(path)
    if path.endswith("/"):
        return render_gpu_reports(path)
    with open(os.path.join(REPO, path)) as f:
        text = f.read().strip()
    if path.endswith("mini_study.json"):  # the README's result: the study's headline table
        text = format_headline(json.loads(text))
    parts = re.split(r"\n(?=FLOPs of .* by module)", text, maxsplit=1)
    if len(parts) > 1:  # the benchmark's per-module fvcore tables stay in the file
        text = parts[0].strip() + f"\n\nPer-module FLOP tables of each LiFT: `{path}`."
    meta_path = os.path.join(REPO, os.path.splitext(path)[0] + ".json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if all(k in meta for k in PROVENANCE):
            text += (
                f"\n\n*Made {meta['date']} at commit `{meta['commit']}` on {meta['machine']}, "
                f"torch {meta['torch']}: `{meta['command']}`.*"
            )
    return text + "\n"


def updated(readme: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("path")) + m.group(4), readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args()
    stale = []
    for page in PAGES:
        with open(os.path.join(REPO, page)) as f:
            text = f.read()
        new = updated(text)
        if new != text:
            stale.append(page)
            if not args.check:
                atomic_write_text(os.path.join(REPO, page), new)
        if not args.check:
            print(f"{page}: {len(BLOCK.findall(text))} generated block(s) rewritten")
    if args.check and stale:
        print(f"{', '.join(stale)} out of date: run tools/update_readme.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
