#!/usr/bin/env python
"""Mutation testing: plant each bug of dev/mutants.yaml and check that its covering tests fail.

Each mutant is applied, alone, to a temporary copy of the repository (the files git tracks plus
the untracked ones it does not ignore), never to the working tree; its covering tests run there
with ``pytest -x -q`` under a timeout, and the copy's file is restored before the next mutant.
A mutant is *caught* when those tests fail, *survived* when they pass. Before any mutant, the
covering tests must pass on the unmutated copy (the baseline). Exit status: 0 if every mutant
was caught, 1 otherwise, 2 for a bad mutant list or a failing baseline.

    .venv/bin/python dev/mutate.py                  # all mutants
    .venv/bin/python dev/mutate.py --list           # names, files, tests
    .venv/bin/python dev/mutate.py --only lift-file-not-strict --only 'evaluator-*'
    .venv/bin/python dev/mutate.py --skip 'lift-s-*'
"""

import argparse
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = {"name", "file", "old", "new", "tests", "description", "regex"}


def load_mutants(path: str) -> List[Dict]:
    """The mutant list, checked: unique names, the fields each needs, tests as a list."""
    with open(path) as f:
        mutants = yaml.safe_load(f)
    if not isinstance(mutants, list) or not mutants:
        raise SystemExit(f"{path}: expected a non-empty list of mutants")
    names = set()
    for i, m in enumerate(mutants):
        where = f"{path}: mutant {i + 1} ({m.get('name', 'unnamed')})"
        missing = {"name", "file", "old", "new", "tests", "description"} - set(m)
        if missing or set(m) - FIELDS:
            raise SystemExit(
                f"{where}: missing {sorted(missing)}, unknown {sorted(set(m) - FIELDS)}"
            )
        if m["name"] in names:
            raise SystemExit(f"{where}: the name is used twice")
        names.add(m["name"])
        if isinstance(m["tests"], str):
            m["tests"] = [m["tests"]]
        if m["old"] == m["new"]:
            raise SystemExit(f"{where}: old and new are the same")
    return mutants


def mutate(text: str, mutant: Dict) -> str:
    """``text`` with the mutant's replacement, which must match exactly once."""
    if mutant.get("regex"):
        new, count = re.subn(mutant["old"], mutant["new"], text, flags=re.MULTILINE)
    else:
        count = text.count(mutant["old"])
        new = text.replace(mutant["old"], mutant["new"])
    if count != 1:
        raise ValueError(
            f"mutant {mutant['name']}: the old text matches {count} times in {mutant['file']} "
            f"(must be exactly once); update dev/mutants.yaml to the current code"
        )
    return new


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


def is_dirty(path: str) -> bool:
    """Whether ``path`` differs from HEAD (uncommitted changes) or is not committed at all."""
    tracked = git("ls-files", "--error-unmatch", path).returncode == 0
    return not tracked or git("diff", "--quiet", "HEAD", "--", path).returncode != 0


def copy_repo(dest: str) -> None:
    """The files git tracks and the untracked ones it does not ignore (no .venv, no outputs);
    a tracked symlink (``lift_det/model_zoo/configs``) is copied as the same link."""
    files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    for rel in filter(None, files.split("\0")):
        src, dst = os.path.join(REPO, rel), os.path.join(dest, rel)
        if os.path.islink(src) or os.path.isfile(src):  # deleted files are still listed
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)


def run_pytest(copy: str, tests: List[str], timeout: float) -> (Optional[int], str, float):
    """(pytest's exit status or None on timeout, the output's tail, seconds) in ``copy``."""
    env = dict(os.environ)
    # the copy's lift_det (and its tools, tests) shadow the editable install of the working tree,
    # also in the subprocesses the tests start; no .pyc: a mutant of the same size and second
    # would otherwise reuse the unmutated file's bytecode
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [copy, env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.time()
    proc = subprocess.Popen(
        cmd,
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a timeout ends the tests' subprocesses too
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    return code, out[-3000:], time.time() - start


def status_of(code: Optional[int]) -> str:
    # pytest: 0 all passed, 1 some failed, 2 interrupted (e.g. the mutant breaks an import at
    # collection), 3 internal error, 4 usage error (a test id not found), 5 no tests collected
    if code is None:
        return "caught (timeout)"
    return {0: "SURVIVED", 1: "caught", 2: "caught (collection)"}.get(
        code, f"ERROR (pytest {code})"
    )


def select(mutants: List[Dict], only: List[str], skip: List[str]) -> List[Dict]:
    if only:
        unknown = [p for p in only if not any(fnmatch.fnmatch(m["name"], p) for m in mutants)]
        if unknown:
            raise SystemExit(f"--only {unknown}: no such mutant (see --list)")
        mutants = [m for m in mutants if any(fnmatch.fnmatch(m["name"], p) for p in only)]
    return [m for m in mutants if not any(fnmatch.fnmatch(m["name"], p) for p in skip)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", default=os.path.join(REPO, "dev", "mutants.yaml"))
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", action="append", default=[], help="name or glob (repeatable)")
    parser.add_argument("--skip", action="append", default=[], help="name or glob (repeatable)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="mutate files with uncommitted changes too (their results then describe the "
        "working tree, not a commit)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument(
        "--show", action="store_true", help="print the end of pytest's output for every mutant"
    )
    args = parser.parse_args(argv)

    mutants = select(load_mutants(args.mutants), args.only, args.skip)
    if args.list:
        for m in mutants:
            print(f"{m['name']:34s} {m['file']}\n{'':34s} {m['description']}")
            print("".join(f"{'':34s} - {t}\n" for t in m["tests"]), end="")
        return 0
    if not mutants:
        raise SystemExit("no mutant selected")

    copy = tempfile.mkdtemp(prefix="lift_det-mutate-")
    rows = []
    try:
        copy_repo(copy)
        # refuse what cannot be checked: a dirty target, a mutant that does not apply, tests
        # whose file does not exist (yet)
        runnable = []
        for m in mutants:
            src = os.path.join(copy, m["file"])
            missing_tests = sorted(
                {
                    t.split("::")[0]
                    for t in m["tests"]
                    if not os.path.exists(os.path.join(copy, t.split("::")[0]))
                }
            )
            if not os.path.isfile(src):
                rows.append((m, f"ERROR (no file {m['file']})", 0.0, ""))
            elif missing_tests:
                rows.append((m, f"NO TESTS ({', '.join(missing_tests)} missing)", 0.0, ""))
            elif is_dirty(m["file"]) and not args.allow_dirty:
                rows.append((m, "REFUSED (target has uncommitted changes; --allow-dirty)", 0.0, ""))
            else:
                try:
                    mutate(open(src).read(), m)
                except ValueError as e:
                    rows.append((m, f"ERROR ({e})", 0.0, ""))
                    continue
                runnable.append(m)

        if runnable and not args.no_baseline:
            tests = list(dict.fromkeys(t for m in runnable for t in m["tests"]))
            print(
                f"baseline: {len(tests)} covering test id(s) on the unmutated copy ...", flush=True
            )
            code, out, secs = run_pytest(copy, tests, args.timeout * 2)
            if code != 0:
                print(out)
                print(f"baseline FAILED (pytest status {code}, {secs:.0f} s): fix the tests first")
                return 2
            print(f"baseline passed ({secs:.0f} s)")

        for i, m in enumerate(runnable):
            src = os.path.join(copy, m["file"])
            original = open(src).read()
            print(f"[{i + 1}/{len(runnable)}] {m['name']} ...", end=" ", flush=True)
            try:
                with open(src, "w") as f:
                    f.write(mutate(original, m))
                code, out, secs = run_pytest(copy, m["tests"], args.timeout)
            finally:
                with open(src, "w") as f:
                    f.write(original)
            status = status_of(code)
            print(f"{status} ({secs:.0f} s)", flush=True)
            rows.append((m, status, secs, out))
    finally:
        shutil.rmtree(copy, ignore_errors=True)

    order = {m["name"]: i for i, m in enumerate(mutants)}
    rows.sort(key=lambda r: order[r[0]["name"]])
    width = max(len(m["name"]) for m, *_ in rows)
    print(f"\n{'mutant':{width}s}  {'result':20s} {'s':>4s}  description")
    for m, status, secs, _ in rows:
        print(f"{m['name']:{width}s}  {status:20s} {secs:4.0f}  {m['description']}")
    bad = [(m, status, out) for m, status, _, out in rows if not status.startswith("caught")]
    for m, status, out in [(m, s, o) for m, s, _, o in rows] if args.show else bad:
        if out:
            print(f"\n---- {m['name']}: {status}; tests {m['tests']}\n{out[-1500:]}")
    caught = len(rows) - len(bad)
    survived = sum(s == "SURVIVED" for _, s, _ in bad)
    print(
        f"\n{len(rows)} mutants: {caught} caught, {survived} survived, "
        f"{len(bad) - survived} not checked (errors, refused, missing tests)"
    )
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
