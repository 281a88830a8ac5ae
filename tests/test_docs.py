"""Every code block of the README and its pages (docs/[A-Z]*.md) is tested: run as written by the
test that names it, or, for what needs COCO or GPUs, its commands checked as written: every
``tools/train_net.py`` command's config loads with its overrides and passes the checks made
before anything is built, every other tool's flags are its own, every make target exists."""

import os
import re
import shlex
import subprocess
import pytest

from conftest import REPO, load_tool, tool_help
from lift_det.engine import checks

update_readme = load_tool("update_readme")
train_net = load_tool("train_net")

# blocks that tests run as written: the section or example marker -> the test that runs it
RUN_BY = {
    "## Quick start: step by step on the mini data": "tests/test_readme_stages.py",
    "### Export": "tests/test_export.py",
    "<!-- example: vitdet_l_lift -->": "tests/test_configs.py",
    "<!-- example: own_coco -->": "tests/test_configs.py",
}


def blocks():
    """(page, where, language, code) of every fenced block; ``where``: the RUN_BY key it falls
    under (its section, or the example marker right above it), or ''."""
    found = []
    for page in update_readme.PAGES:
        text = open(os.path.join(REPO, page)).read()
        fenced = list(re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.M | re.S))
        prose = re.sub(r"^```.*?^```$", lambda m: " " * len(m.group()), text, flags=re.M | re.S)
        found_headings = re.finditer(r"^(#+) .*$", prose, flags=re.M)
        headings = [(m.start(), m.group(1), m.group()) for m in found_headings]
        for m in fenced:
            where = ""
            for key in RUN_BY:
                if key.startswith("<!--"):
                    where = key if text[: m.start()].rstrip().endswith(key) else where
                    continue
                level = len(key.split(" ")[0])
                above = [h for at, hashes, h in headings if at < m.start() and len(hashes) <= level]
                where = key if above and above[-1] == key else where
            found.append((page, where, m.group(1), m.group(2)))
    return found


def commands(code):
    """The shell commands of a block (continuations joined, comments dropped)."""
    joined = code.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


CHECKED = [
    (p, c) for p, w, lang, code in blocks() if lang == "bash" and not w for c in commands(code)
]


def test_every_block_is_run_or_checked():
    assert len(blocks()) >= 15
    for page, where, lang, code in blocks():
        if where:
            test = open(os.path.join(REPO, RUN_BY[where])).read()
            assert where.split(": ")[-1].split(" -->")[0] in test, (page, where)
        else:  # not code, or a shell block whose every command is checked below
            assert lang in ("text", "bash"), f"{page}: a {lang or 'plain'} block no test runs"
    assert {c[0] for p, c in CHECKED if c} <= {"make", ".venv/bin/python"}


@pytest.mark.parametrize(
    "page, argv",
    [(p, c[2:]) for p, c in CHECKED if c[1:2] == ["tools/train_net.py"]],
    ids=lambda x: x if isinstance(x, str) and "/" in x else None,
)
def test_train_net_commands_load_and_pass_the_checks(page, argv):
    """The config exists, every override applies (a wrong key fails here), the values pass the
    checks made before anything is built; paths a command reads are left to its run."""
    args = checks.parse_args(argv, train_net.get_parser())
    cfg = train_net.load_config(args)
    assert cfg.train.output_dir


def tool_flags(tmp_path_factory, tool):
    """The flags ``<tool> --help`` prints, run in a subprocess (conftest's tool_help: once per
    session, test_readme.py's test_tools_run reads the same run)."""
    assert tool.startswith("tools/"), tool
    proc = tool_help(tmp_path_factory, tool[len("tools/") :])
    assert proc["returncode"] == 0, proc["stderr"][-2000:]
    return set(re.findall(r"--[\w-]+", proc["stdout"]))


def test_other_commands_are_as_written(tmp_path_factory):
    """Other tools: every flag is one of the tool's own; make: every target exists."""
    others = [c for p, c in CHECKED if c and c[1:2] != ["tools/train_net.py"]]
    assert others
    for argv in others:
        if argv[0] == "make":
            targets = [a for a in argv[1:] if "=" not in a]
            dry_run = subprocess.run(["make", "-n", *targets], cwd=REPO, capture_output=True)
            assert dry_run.returncode == 0, argv
            continue
        flags = tool_flags(tmp_path_factory, argv[1])
        unknown = [a for a in argv[2:] if a.startswith("--") and a.split("=")[0] not in flags]
        assert not unknown, f"{argv[1]}: {unknown} not among its flags"
