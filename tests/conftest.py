"""Shared helpers: tiny ViTDet configs (the real structure, small sizes) for CPU tests."""

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
import pytest
import torch

from detectron2.config import LazyConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="torch")

# a tiny ViT with ViTDet's structure: windowed + global blocks, rel-pos, abs-pos from 224 pretrain
TINY_VIT = dict(
    img_size=128, embed_dim=64, depth=2, num_heads=2, window_size=4, window_block_indexes=[0]
)


# The test files that take longest (`make test`'s --durations), slowest first. They are collected
# first, so pytest-xdist (`--dist loadfile --no-loadscope-reorder` in the Makefile) hands them out
# before the short files, which then fill the gaps: both workers finish at about the same time.
# Every other file follows in the usual order; tests within a file keep theirs.
SLOWEST_FILES = [  # seconds of each file's tests in a full run's --durations (2026-12-07)
    "test_train_net.py",  # 84 (builds tiny_main)
    "test_configs.py",  # 54
    "test_readme_stages.py",  # 45
    "test_train_lift.py",  # 35
    "test_study.py",  # 30
    "test_gpu_check.py",  # 16
    "test_backbone.py",  # 16
    "test_benchmark_detectors.py",  # 11
    "test_study_check.py",  # 14
    "test_checkpoints.py",  # 13
    "test_benchmark.py",  # 12
    "test_mini_data.py",  # 12
    "test_demo.py",  # 12
    "test_export.py",  # 11
    "test_warm_python.py",  # 10
    "test_analysis.py",  # 9
    "test_user_mistakes.py",  # 9
    "test_readme.py",  # 5 (every tool's --help)
]


def pytest_collection_modifyitems(config, items):
    first = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable


# p2-p6 of every ViTDet pyramid (also with LiFT, at any number of passes)
PYRAMID_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def vitdet_vit_kwargs(**sizes):
    """Arguments of detectron2's ``ViT`` as ViTDet sets them, with the given sizes."""
    from functools import partial
    from torch import nn

    return dict(
        patch_size=16,
        use_rel_pos=True,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        pretrain_img_size=224,
        pretrain_use_cls_token=True,
        drop_path_rate=0.0,
        out_feature="last_feat",
        **sizes,
    )


def load_config(name: str, tiny: bool = True):
    """Load ``configs/<name>.py``; with ``tiny`` shrink the ViT to TINY_VIT (128x128 input)."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs", f"{name}.py"))
    if tiny:
        for k, v in TINY_VIT.items():
            setattr(cfg.model.backbone.net, k, v)
        cfg.model.backbone.square_pad = TINY_VIT["img_size"]
    if "lift_weights" in cfg.model.backbone.net:
        cfg.model.backbone.net.lift_weights = ""
    return cfg


# lift_det's configs (``benchmark.py --config-dir``) with their ViT-B shrunk to 2 of its 12 blocks,
# one windowed and one global as in ViTDet: the same models, code paths and relations (LiFT's
# placements against plain ViTDet) at a sixth of the ViT's CPU
SHRUNK_VIT_B = """
from lift_det.model_zoo import get_config

_cfg = get_config({name!r})
_cfg.model.{vit}.update(depth=2, window_block_indexes=[0])
model, dataloader, optimizer, lr_multiplier, train = (
    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.lr_multiplier, _cfg.train)
"""


def shrunk_config_dir(folder, names) -> str:
    """``folder`` holding the configs ``names`` with a 2-block ViT-B (:data:`SHRUNK_VIT_B`)."""
    for name in names:
        vit = "source.net" if name.startswith("lift_stage1") else "backbone.net"
        (folder / name).write_text(SHRUNK_VIT_B.format(name=name, vit=vit))
    return str(folder)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@contextlib.contextmanager
def one_torch_thread():
    """torch on one thread in this block, as the tools' runs here (:data:`CPU_ENV`): a fixture that
    runs an expensive tool in this process leaves the other core to the other xdist worker
    (the benchmark's single run, before it was split in two: 15 s alone on two threads, 17 s on
    one; 26-30 s on two in full runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def restored_environ():
    """``os.environ`` as it was before the block, whatever the block set, changed or removed."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)


@pytest.fixture(autouse=True)
def _environ_restored():
    """Each test leaves the environment as it found it: what a tool run in-process sets
    (``default_setup`` sets ``PYTHONHASHSEED``) would change every later test's subprocesses."""
    with restored_environ():
        yield


@pytest.fixture(scope="module")
def small_mini(tmp_path_factory):
    """A small mini dataset (8 train / 6 val images) that every subprocess finds by env var."""
    from lift_det.data.mini import generate_mini_coco, register_mini_coco

    root = str(tmp_path_factory.mktemp("mini"))
    generate_mini_coco(root, num_train=8, num_val=6)
    old = os.environ.get("LIFT_DET_MINI_ROOT")
    os.environ["LIFT_DET_MINI_ROOT"] = root
    register_mini_coco(root)
    yield root
    if old is None:
        os.environ.pop("LIFT_DET_MINI_ROOT")
    else:
        os.environ["LIFT_DET_MINI_ROOT"] = old
    register_mini_coco()


def load_tool(name: str):
    """``tools/<name>.py`` as a module (its functions run in this process, as launch() with one
    process runs them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", f"{REPO}/tools/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# subprocesses of the tools run on the CPU even where a GPU exists
CPU_ENV = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


WARM_ENV = {}


def pytest_sessionstart(session):
    """A process that runs tests starts :func:`tool_python`'s server as its session starts: the
    server imports while the tests are collected, in the session's own environment (never one a
    fixture has changed). The xdist controller, which runs no test, starts none."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not session.config.getoption("numprocesses", None):
        _start_warm_python()


@functools.lru_cache(maxsize=None)
def _start_warm_python() -> str:
    import tempfile

    import warm_python

    WARM_ENV.update(os.environ)  # the server's environment: requests in it run warm
    return warm_python.start(tempfile.mkdtemp(prefix="lift-det-warm-python-"))


@functools.lru_cache(maxsize=None)
def tool_python() -> str:
    """The interpreter for ``tools/<tool>.py`` subprocesses: ``tests/warm_python.py``'s client, a
    process of its own per run, forked from a server of this test process that has imported torch
    and detectron2 once (about 4 CPU seconds a process). Its tool runs as ``__main__`` with the
    command's argv, directory, environment and stdio; ``-c`` and the like run in
    ``sys.executable``. Each tool's ``--help`` (:func:`tool_help`) runs in the real interpreter:
    every tool's imports are also tested from a fresh process that has run only the tool's first
    import."""
    import warm_python

    client = _start_warm_python()
    warm_python.wait_until_warm(client)
    return client


def doc_text() -> str:
    """The README and the pages it links (tools/update_readme.py's PAGES) as one text: a section
    is found wherever it lives."""
    pages = load_tool("update_readme").PAGES
    return "\n".join(open(os.path.join(REPO, page)).read() for page in pages)


def doc_table_rows(heading: str):
    """First cells of the table under ``heading`` in the documentation (header row skipped)."""
    section = doc_text().split(heading, 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [row.split(" | ")[0][2:] for row in rows[1:]]


@contextlib.contextmanager
def _file_lock(path: str):
    """An exclusive lock on ``path`` (fcntl), held by one process of the machine at a time."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_once(tmp_path_factory, name: str, build) -> str:
    """
    ``build(folder)`` once per test session, however many pytest-xdist workers ask for it
    (pytest-xdist's documented pattern): the first caller builds into ``<session tmp>/<name>``
    under a file lock, the others wait for it and read what it built. A build that raised leaves
    no mark: the next caller builds again (and fails again, in its own test). Returns the folder.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above the workers' own
    folder = root / name
    with _file_lock(f"{folder}.lock"):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(str(folder))
            (folder / ".built").write_text("")
    return str(folder)


TOOLS = sorted(f for f in os.listdir(os.path.join(REPO, "tools")) if f.endswith(".py"))
FIRST_LINE = "import lift_det  # noqa: F401  # isort: skip"  # every tool's first statement

# ``python tools/<tool> --help`` for every tool, from one fresh interpreter: it does what each tool
# does first (sys.path[0] = tools/, ``import lift_det``), then forks one child per tool, which runs
# the rest of the tool as __main__ with its stdout and stderr in files of its own
HELP_RUNNER = """
import os, runpy, sys, traceback
tools_dir, out = sys.argv[1], sys.argv[2]
sys.path[0] = tools_dir
import lift_det
for tool in sys.argv[3:]:
    path = os.path.join(tools_dir, tool)
    pid = os.fork()
    if pid == 0:
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            os.dup2(os.open(os.path.join(out, f"{tool}.{stream}"), flags), fd)
        sys.argv, code = [path, "--help"], 0
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) or e.code is None else 1
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    with open(os.path.join(out, f"{tool}.returncode"), "w") as f:
        f.write(str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
"""


def tool_help(tmp_path_factory, tool: str) -> dict:
    """``tools/<tool> --help`` as users run it (on the CPU), for every tool at once per test session
    (:func:`build_once`): its returncode, stdout and stderr. The tools run from nothing but
    :data:`FIRST_LINE`, which each of them starts with (checked), done once in a fresh interpreter
    (:data:`HELP_RUNNER`). test_readme.py and test_docs.py both read it; the output depends on
    nothing but the tool."""

    def build(folder):
        for name in TOOLS:
            with open(os.path.join(REPO, "tools", name)) as f:
                first = next(line for line in f if line.startswith(("import", "from")))
            assert first.startswith(FIRST_LINE), f"tools/{name} does not start with {FIRST_LINE}"
        cmd = [sys.executable, "-c", HELP_RUNNER, os.path.join(REPO, "tools"), folder, *TOOLS]
        env = dict(os.environ, **CPU_ENV)
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        for name in TOOLS:
            with open(os.path.join(folder, f"{name}.returncode")) as f:
                result = dict(returncode=int(f.read()), stdout="", stderr=proc.stderr)
            for stream in ("stdout", "stderr"):
                with open(os.path.join(folder, f"{name}.{stream}")) as f:
                    result[stream] += f.read()  # lift_det's import wrote to every tool's stderr
            with open(os.path.join(folder, f"{name}.json"), "w") as f:
                json.dump(result, f)

    with open(os.path.join(build_once(tmp_path_factory, "tools_help", build), f"{tool}.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def tiny_main(tmp_path_factory):
    """
    `make main`'s whole pipeline (lift_det.study.main_job's steps, each tools/train_net.py in a
    subprocess) at one iteration per step on the small mini data (8 train / 6 val images), built
    once per test session and read by the tests of the main job (test_run_mini.py) and of
    train_net's stages (test_train_net.py): baseline -> stage one -> stage two (+LiFT, +bilinear,
    the baseline's extra iterations), each evaluated. Returns (the pipeline's folder, the summary
    ``run_pipeline`` returned, its stdout); a test that changes a run works on a copy.
    """
    from lift_det.data.mini import generate_mini_coco
    from lift_det.study import main_job

    def build(folder):
        data = os.path.join(folder, "data")
        generate_mini_coco(data, num_train=8, num_val=6)
        stdout = io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
            for k, v in {**CPU_ENV, "LIFT_DET_MINI_ROOT": data}.items():
                mp.setenv(k, v)
            mp.chdir(folder)
            mp.setattr(sys, "executable", tool_python())  # the steps' interpreter
            summary = main_job.run_pipeline(os.path.join(folder, "mini"), 1, 1, 1)
        with open(os.path.join(folder, "summary.json"), "w") as f:  # as returned, not as written
            json.dump(summary, f)
        with open(os.path.join(folder, "stdout.txt"), "w") as f:
            f.write(stdout.getvalue())

    folder = build_once(tmp_path_factory, "tiny_main", build)
    with open(os.path.join(folder, "summary.json")) as f, open(f"{folder}/stdout.txt") as g:
        return os.path.join(folder, "mini"), json.load(f), g.read()
