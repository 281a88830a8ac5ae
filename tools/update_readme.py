#!/usr/bin/env python3
"""
Copy the committed, tool-written results into README.md: every block between
``<!-- generated: docs/X.md -->`` and ``<!-- /generated -->`` gets the content of docs/X.md, and,
when docs/X.json has them, a line with the date, commit, machine, torch version and command.

    tools/update_readme.py            # rewrite README.md
    tools/update_readme.py --check    # exit 1 if README.md is out of date

docs/main_job.{md,json} come from `make main` (copy output/mini/results.{md,json});
docs/benchmark.{md,json} from tools/benchmark.py; docs/mini_study.{md,json,png} from `make study`.
tests/test_readme.py runs the check.
"""

import argparse
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- generated: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)
PROVENANCE = ("date", "commit", "machine", "torch", "command")


def render(path: str) -> str:
    """The README text for the generated file ``path`` (relative to the repo)."""
    with open(os.path.join(REPO, path)) as f:
        text = f.read().strip()
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
    readme_path = os.path.join(REPO, "README.md")
    with open(readme_path) as f:
        readme = f.read()
    new = updated(readme)
    if args.check:
        if new != readme:
            print("README.md is out of date: run tools/update_readme.py", file=sys.stderr)
            return 1
        return 0
    with open(readme_path, "w") as f:
        f.write(new)
    print(f"README.md: {len(BLOCK.findall(readme))} generated block(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
